r"""The paper's claims, answered per task from the numbers of :mod:`credit.reproduction.numbers`.

Each claim is a family of contrasts; a contrast **supports** the claim when its
estimate points the claimed way and its Holm-adjusted p-value is below
:data:`ALPHA`. Holm's correction runs once over every contrast of every claim
and task of the report (:func:`adjust`). A cell is

* ``reproduced``: every contrast supports the claim;
* ``not reproduced``: none does;
* ``mixed``: some do;
* ``not tested``: no contrast could be computed (too few runs that fit, no
  probe, or the theory's threshold is not measurable for the optimizer).

All contrasts use the runs at matched fit (first evaluation meeting the task's
fit criterion), distinct rules only; a rule none of whose runs fit is compared at
the matched training loss instead (the label says so):

=======================  ============================================================
claim                    contrast (per approximate rule, against BPTT unless said)
=======================  ============================================================
worse gap                gap difference > 0 (bootstrap CI, Mann-Whitney p)
more variable gap        gap variance ratio > 1 (Brown-Forsythe p)
gap tracks curvature     rank correlation of λ_max and gap with the rule partialled out > 0
sharper regions          λ_max difference > 0 (bootstrap CI, Mann-Whitney p)
theorem predicts it      per rule (BPTT included), over its trained runs whose λ_max stops
                         rising (:mod:`credit.analysis.edge_of_stability`): the bootstrap
                         95% CI of the median ratio over the plateau lies inside the band
                         around 1 (``BAND``). SGD: the rule's own edge ηcλ_max/2; Adam:
                         λ_max(P⁻¹H) over (2+2β₁)/((1−β₁)η) where measured (the rule's
                         own bound is derived for SGD only); momentum: λ_max over
                         (2+2β)/η. Rules with fewer than ``MIN_PLATEAUS`` plateaus
                         are listed, not counted
remedies help            each remedy's gap difference < 0 against the same rule (base)
=======================  ============================================================
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import NamedTuple

from credit.analysis import edge_of_stability as eos
from credit.analysis import stats

ALPHA = 0.05
MIN_PLATEAUS = 3  # runs whose sharpness stopped rising needed to judge a rule's edge
REFERENCE_RULE = "bptt"
HEADLINE_GAP = "gap_acc"

CLAIMS = (
  ("worse_gap", "worse gap"),
  ("more_variable", "more variable gap"),
  ("correlation", "gap correlates with curvature"),
  ("sharper", "rules reach sharper regions"),
  ("theory", "the theorem predicts the curvature"),
  ("remedies", "the remedies help"),
)
REPRODUCED, NOT_REPRODUCED, MIXED, NOT_TESTED = (
  "reproduced",
  "not reproduced",
  "mixed",
  "not tested",
)


class Contrast(NamedTuple):
  """One contrast of a claim: a label, its estimate (with CI), its sign and p-values."""

  label: str
  estimate: float
  ci: tuple[float, float] | None
  direction: int  # +1: the claim says the estimate is above ``null``; -1: below
  null: float  # the estimate's value under no effect (0; 1 for a variance ratio)
  p: float
  p_holm: float


def _approximate(task: Mapping) -> dict:
  return {r: e for r, e in task["rules"].items() if r != REFERENCE_RULE}


def _usable(c: Mapping | None) -> bool:
  return bool(c) and math.isfinite(c["diff"]) and math.isfinite(c["mw_p"])


def _n(c: Mapping) -> str:
  return f"n {c['n'][0]} vs {c['n'][1]}"


def _raw_contrasts(task: Mapping) -> dict[str, list[tuple[str, dict, str, int]]]:
  """Per claim: ``(label, holder dict, estimate key, direction)``; p is at ``holder['mw_p']``.

  A rule without runs that fit is compared at the matched training loss instead
  (labelled so), when the task has one.
  """
  out: dict[str, list] = {key: [] for key, _ in CLAIMS if key != "theory"}
  at_loss = (task.get("matched_loss") or {}).get("rules", {})
  loss_label = f"at train loss {task['matched_loss']['target']:.3g}, " if at_loss else ""
  for rule, e in _approximate(task).items():
    for claim, metric in (("worse_gap", HEADLINE_GAP), ("sharper", "lambda")):
      vs = e["matched"][metric].get("vs_bptt")
      if _usable(vs):
        out[claim].append((f"{rule} ({_n(vs)})", vs, "diff", +1))
        continue
      alt = at_loss.get(rule, {}).get(metric, {}).get("vs_bptt")
      if _usable(alt):
        out[claim].append((f"{rule} ({loss_label}{_n(alt)})", alt, "diff", +1))
    var = e.get("variability")
    vs = e["matched"][HEADLINE_GAP].get("vs_bptt")
    if var and math.isfinite(var["p"]):
      out["more_variable"].append((f"{rule} ({_n(vs)})", var, "ratio", +1))
  partial = task["relation"]["partial"]
  if math.isfinite(partial["p"]):
    out["correlation"].append((f"n {partial['n']}, rules {partial['groups']}", partial, "r", +1))
  for variant, per_rule in task["remedies"].items():
    for rule, e in per_rule.items():
      vs = e[HEADLINE_GAP]["vs_base"]
      if _usable(vs):
        out["remedies"].append((f"{variant}/{rule} ({_n(vs)})", vs, "diff", -1))
        continue
      alt = e.get("at_loss", {}).get(HEADLINE_GAP, {}).get("vs_base")
      if _usable(alt):
        out["remedies"].append((f"{variant}/{rule} ({loss_label}{_n(alt)})", alt, "diff", -1))
  return out


def _p_key(holder: Mapping) -> str:
  return "mw_p" if "mw_p" in holder else "p"


def adjust(numbers: Mapping) -> dict:
  """A copy of ``numbers`` with ``p_holm`` beside the p-value of every claim's contrast.

  The family is every contrast of every claim and task of the report.
  """
  out = copy.deepcopy(numbers)
  holders = [
    h for t in out.values() for family in _raw_contrasts(t).values() for _, h, _, _ in family
  ]
  adjusted = stats.holm([h[_p_key(h)] for h in holders])
  for holder, p in zip(holders, adjusted, strict=True):
    holder["p_holm"] = p
  return out


def contrasts(task: Mapping) -> dict[str, list[Contrast]]:
  """The contrasts of each claim for one task of :func:`adjust`'s output."""
  out = {}
  for claim, family in _raw_contrasts(task).items():
    out[claim] = [
      Contrast(
        label,
        float(h[key]),
        tuple(h["ci"]) if "ci" in h else None,
        direction,
        1.0 if key == "ratio" else 0.0,
        float(h[_p_key(h)]),
        float(h.get("p_holm", math.nan)),
      )
      for label, h, key, direction in family
    ]
  return out


def supports(c: Contrast) -> bool:
  """Whether a contrast supports its claim: the claimed sign, Holm p < ALPHA."""
  return (c.estimate - c.null) * c.direction > 0 and c.p_holm < ALPHA


def verdict(flags: list[bool]) -> str:
  """``reproduced`` (all), ``not reproduced`` (none), ``mixed`` (some), ``not tested`` (empty)."""
  if not flags:
    return NOT_TESTED
  if all(flags):
    return REPRODUCED
  if not any(flags):
    return NOT_REPRODUCED
  return MIXED


class Cell(NamedTuple):
  """One cell of the claims table: the verdict and the evidence lines behind it."""

  verdict: str
  evidence: list[str]


def fmt(x: float, digits: int = 3) -> str:
  """A number for a table: ``n/a`` for NaN, ``inf``, else ``digits`` significant digits."""
  x = stats.as_float(x)
  if math.isnan(x):
    return "n/a"
  if math.isinf(x):
    return "inf" if x > 0 else "-inf"
  return f"{x:.{digits}g}"


def _line(c: Contrast, name: str) -> str:
  ci = f" [{fmt(c.ci[0])}, {fmt(c.ci[1])}]" if c.ci else ""
  return f"{c.label}: {name} {fmt(c.estimate)}{ci}, p_Holm {fmt(c.p_holm, 2)}"


NO_CONTRAST = {
  "worse_gap": "no approximate rule with runs that fit, or no BPTT run that fits",
  "more_variable": "fewer than 2 runs that fit per rule",
  "correlation": "too few runs that fit with λ_max measured",
  "sharper": "no λ_max at matched fit",
  "remedies": "no remedy run that fits, or no base run that fits",
}
ESTIMATE_NAMES = {
  "worse_gap": "Δgap",
  "more_variable": "var ratio",
  "correlation": "partial rank r",
  "sharper": "Δλ",
  "remedies": "Δgap",
}


def _ratio(d: Mapping) -> str:
  return f"{fmt(d['median'])} [{fmt(d['ci'][0])}, {fmt(d['ci'][1])}]"


def theory_cell(task: Mapping) -> Cell:
  """Whether each rule stops getting sharper at its own edge (module docstring), or why not tested.

  SGD: the rule's own edge ηcλ_max/2; other optimizers: the optimizer's threshold on the
  sharpness it bounds, when measured. The number is the median over each run's plateau
  with its bootstrap 95% CI, over the runs whose sharpness stopped rising.
  """
  th = task.get("threshold") or {}
  if not th.get("formula"):
    return Cell(NOT_TESTED, [f"optimizer {th.get('optimizer') or 'unknown'}: no threshold derived"])
  sgd = th["optimizer"] == "sgd"
  edges = {rule: e["edge"] for rule, e in task["rules"].items() if e.get("edge")}
  if not sgd and not any(e["optimizer_edge"]["measured"] for e in edges.values()):
    why = (
      f"{th['optimizer']}: threshold {th['formula']} = {fmt(th['value'])} on "
      f"{th['applies_to']}; "
      + ("preconditioned sharpness not measured" if th["applies_to"] != "H" else "no λ_max")
    )
    return Cell(NOT_TESTED, [why])
  name = "ηcλ/2" if sgd else f"λ({th['applies_to']})/({th['formula']})"
  flags, lines = [], []
  for rule, e in edges.items():
    ratio = (e["own_edge"] if sgd else e["optimizer_edge"])["plateau"]
    who = "" if e["population"] == "trained" else "; none fits: all kept runs"
    head = f"{rule} ({e['found']}/{e['runs']} runs stop rising{who})"
    if e["found"] < MIN_PLATEAUS or not math.isfinite(ratio["median"]):
      lines.append(f"{head}: too few plateaus to judge")
      continue
    flags.append(ratio["verdict"] == "at the edge")
    extra = (
      f"; radius of I−ηJ {_ratio(e['update_map_radius']['plateau'])}"
      if sgd and math.isfinite(e["update_map_radius"]["plateau"]["median"])
      else ""
    )
    lines.append(f"{head}: {name} {_ratio(ratio)}, {ratio['verdict']}{extra}")
  band = f"edge: CI of the median inside [{fmt(eos.BAND[0])}, {fmt(eos.BAND[1])}]"
  return Cell(verdict(flags), [*lines, band] if lines else ["no λ_max measured"])


def table(numbers: Mapping) -> dict[str, dict[str, Cell]]:
  """``{claim: {task: Cell}}`` for every claim of :data:`CLAIMS` and task of ``numbers``.

  Args:
    numbers: the output of :func:`adjust`.
  """
  out: dict[str, dict[str, Cell]] = {key: {} for key, _ in CLAIMS}
  for task, t in numbers.items():
    per_claim = contrasts(t)
    for key, _ in CLAIMS:
      if key == "theory":
        out[key][task] = theory_cell(t)
        continue
      family = per_claim[key]
      flags = [supports(c) for c in family]
      lines = [_line(c, ESTIMATE_NAMES[key]) for c in family] or [NO_CONTRAST[key]]
      out[key][task] = Cell(verdict(flags), lines)
  return out
