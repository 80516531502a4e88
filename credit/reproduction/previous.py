r"""The verdict rule the reports used before the five verdicts, kept to say what moved.

Until issue 23 a contrast *supported* its claim when its difference of means pointed
the claimed way and its two-sided Mann-Whitney (Brown-Forsythe, partial-correlation)
p passed Holm's correction over every contrast of every claim and task; a cell was
"reproduced" (all supported), "not reproduced" (none), "mixed" or "not tested". The
operating point was each run's first fit, a rule that never fits was compared at the
matched training loss (wherever it lay), and the theorem's cell counted a rule as
supporting when the 95% CI of its plateau ratio lay inside the band. This module
recomputes those labels from a report's numbers so that the report can say, from the
same files, how many contrasts moved from each old label to each new verdict
(:func:`moves`). Nothing else reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from credit.analysis import stats

REFERENCE_RULE = "bptt"
ALPHA = 0.05
MIN_PLATEAUS = 3
SUPPORTS, DOES_NOT = "supported (old)", "not supported (old)"


def _usable(c: Mapping | None) -> bool:
  return bool(c) and math.isfinite(c["diff"]) and math.isfinite(c["mw_p"])


def _contrasts(task: Mapping) -> list[tuple[str, str, float, float, int]]:
  """``(claim, key, estimate - null, p, direction)`` of the old table, in its order."""
  out = []
  at_loss = (task.get("matched_loss") or {}).get("rules", {})
  for rule, e in task["rules"].items():
    if rule == REFERENCE_RULE:
      continue
    for claim, metric in (("worse_gap", "gap_acc"), ("sharper", "lambda")):
      vs = e["matched"][metric].get("vs_bptt")
      if not _usable(vs):
        vs = at_loss.get(rule, {}).get(metric, {}).get("vs_bptt")
      if _usable(vs):
        out.append((claim, rule, vs["diff"], vs["mw_p"], +1))
    var = e.get("variability")
    if var and math.isfinite(var["p"]):
      out.append(("more_variable", rule, var["ratio"] - 1.0, var["p"], +1))
  partial = task["relation"]["partial"]
  if math.isfinite(partial["p"]):
    out.append(("correlation", "pooled", partial["r"], partial["p"], +1))
  for variant, per_rule in task["remedies"].items():
    for rule, e in per_rule.items():
      vs = e["gap_acc"]["vs_base"]
      if not _usable(vs):
        vs = e.get("at_loss", {}).get("gap_acc", {}).get("vs_base")
      if _usable(vs):
        out.append(("remedies", f"{variant}/{rule}", vs["diff"], vs["mw_p"], -1))
  return out


def labels(numbers: Mapping) -> dict[tuple[str, str, str], str]:
  """``{(claim, task, key): old label}`` for every contrast the old table listed."""
  rows = [(task, *c) for task, t in numbers.items() for c in _contrasts(t)]
  adjusted = stats.holm([r[4] for r in rows])
  out = {}
  for (task, claim, key, effect, _, direction), p in zip(rows, adjusted, strict=True):
    ok = effect * direction > 0 and p < ALPHA
    out[(claim, task, key)] = SUPPORTS if ok else DOES_NOT
  for task, t in numbers.items():
    th = t.get("threshold") or {}
    if not th.get("formula"):
      continue
    sgd = th["optimizer"] == "sgd"
    for rule, e in t["rules"].items():
      edge = e.get("edge")
      if not edge or (not sgd and not edge["optimizer_edge"]["measured"]):
        continue
      ratio = (edge["own_edge"] if sgd else edge["optimizer_edge"])["plateau"]
      if edge["found"] < MIN_PLATEAUS or not math.isfinite(ratio["median"]):
        continue
      ok = ratio["verdict"] == "at the edge"
      out[("theory", task, rule)] = SUPPORTS if ok else DOES_NOT
  return out


def moves(numbers: Mapping) -> dict[str, dict[str, int]]:
  """``{old label: {new verdict: count}}`` over the contrasts both rules name.

  ``numbers`` is :func:`credit.reproduction.claims.adjust`'s output. Contrasts the old
  table did not list (the fit row, rules it could not compute) count under ``new``.
  """
  old = labels(numbers)
  out: dict[str, dict[str, int]] = {}
  for task, t in numbers.items():
    for claim, judged in t["verdicts"].items():
      for j in judged:
        keys = [(claim, task, j["key"])]
        if j["key"] == "all":  # one "not tested" line stands for every rule of the task
          keys = [k for k in old if k[0] == claim and k[1] == task] or keys
        for k in keys:
          label = old.pop(k, "new")
          out.setdefault(label, {}).setdefault(j["verdict"], 0)
          out[label][j["verdict"]] += 1
  for label in old.values():  # an old contrast with no new counterpart
    out.setdefault(label, {}).setdefault("dropped", 0)
    out[label]["dropped"] += 1
  return out
