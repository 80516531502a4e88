r"""The paper's claims, judged per contrast: supported, contradicted, equivalent, inconclusive,
not tested.

Every contrast of a claim gets one of five verdicts, under the protocol declared before
the data were seen (:mod:`credit.reproduction.protocol`: level, power, families, operating
point, gap unit, margins, chance levels):

* **supported**: the one-sided test in the paper's direction passes Holm's correction
  within its claim's family;
* **contradicted**: the one-sided test in the opposite direction passes it;
* **equivalent**: the two one-sided tests (TOST) at the declared margin pass it (the
  margin is given in the cell);
* **inconclusive**: none of these; the cell gives the minimum detectable effect (MDE)
  at the declared power for that n, at the level the test had to pass (α/m);
* **not tested**, with the reason: the reference rule does not fit; the rule never fits
  and its matched training loss lies within the declared margin of chance (in loss or
  score); fewer runs than can reach significance even at complete separation after the
  correction (smallest possible p × m ≥ α); the measure was not taken.

**Families.** Each claim is one family over every task and rule of the report (Holm
within it). The primary claims (``worse_gap``, ``sharper``, ``correlation``, as declared)
are the paper's directional claims; ``more_variable``, ``theory``, ``remedies`` and
``fit`` are secondary families. A contrast that cannot reach significance at its n is
not tested and leaves the family, which is sized again until it is stable.

**Direction** always comes from the statistic the test uses: Mann-Whitney's (Cliff's δ,
with the Hodges-Lehmann shift as its estimate), the one-sided Brown-Forsythe t, the
partial rank r's t, Fisher's exact test. A difference of means never decides a sign.

=======================  ================================================================
claim                    contrast (per approximate rule against BPTT unless said)
=======================  ================================================================
worse gap                primary gap larger: Mann-Whitney one-sided, TOST at the gap margin
more variable gap        primary gap more spread: Brown-Forsythe one-sided (no margin)
gap tracks curvature     partial rank r(λ_max, gap) > 0, rule partialled out (one per task),
                         TOST on Fisher's z at ±``correlation_margin``
sharper regions          λ_max larger, in log space (estimate: a ratio), TOST at
                         ±log ``lambda_margin``
theorem predicts it      SGD only: per rule whose runs stop getting sharper
                         (:mod:`credit.analysis.edge_of_stability`), the median over the
                         plateau of ηcλ_max/2 with its bootstrap CI at level 1 − α/m:
                         supported inside ``BAND``, contradicted entirely outside it
remedies help            each remedy's primary gap smaller than the same rule's without it
fails to learn           the rule fits in fewer runs than BPTT: Fisher exact, one-sided
=======================  ================================================================

Operating point of the verdicts: the declared ``headline`` (each trained run's mean
over a window after its first fit); the first fit and the last-quarter mean are shown
beside it. A rule none of whose runs fits is compared at the matched training loss,
unless that loss lies near chance.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from credit.analysis import edge_of_stability as eos
from credit.analysis import inference, stats
from credit.reproduction import protocol as protocol_lib

import numpy as np

MIN_PLATEAUS = 3  # runs whose sharpness stopped rising needed to judge a rule's edge
REFERENCE_RULE = "bptt"

CLAIMS = (
  ("worse_gap", "worse gap"),
  ("more_variable", "more variable gap"),
  ("correlation", "gap correlates with curvature"),
  ("sharper", "rules reach sharper regions"),
  ("theory", "the theorem predicts the curvature"),
  ("remedies", "the remedies help"),
  ("fit", "rules fail to learn more often"),
)
SUPPORTED, CONTRADICTED, EQUIVALENT, INCONCLUSIVE, NOT_TESTED = (
  "supported",
  "contradicted",
  "equivalent",
  "inconclusive",
  "not tested",
)
VERDICTS = (SUPPORTED, CONTRADICTED, EQUIVALENT, INCONCLUSIVE, NOT_TESTED)
POINT_NAMES = {"matched": "first fit", "window": "window", "last": "last quarter"}
ESTIMATE_NAMES = {
  "worse_gap": "Δgap (HL)",
  "more_variable": "var ratio",
  "correlation": "partial rank r",
  "sharper": "λ ratio (HL, log)",
  "theory": "ηcλ/2",
  "remedies": "Δgap (HL)",
  "fit": "fit-rate deficit",
}


def fmt(x: float, digits: int = 3) -> str:
  """A number for a table: ``n/a`` for NaN, ``inf``, else ``digits`` significant digits."""
  x = stats.as_float(x)
  if math.isnan(x):
    return "n/a"
  if math.isinf(x):
    return "inf" if x > 0 else "-inf"
  return f"{x:.{digits}g}"


class Candidate(NamedTuple):
  """A contrast before the family is sized: its samples, or why it cannot be tested."""

  claim: str
  task: str
  key: str  # the rule, ``variant/rule``, or ``pooled``
  where: str  # the operating point, or ``at train loss L``
  kind: str  # shift | log_shift | spread | correlation | fit | band
  claimed: str  # the paper's direction: "greater" or "less"
  samples: tuple
  margin: float  # NaN: no equivalence margin
  margin_text: str
  reason: str  # non-empty: not tested
  others: dict  # estimates at the other operating points (descriptive)


def _finite(values) -> np.ndarray:
  return stats.finite([] if values is None else values)


def _margin_gap(
  p: Mapping, unit: str, reference: Sequence[float], base: str = "BPTT"
) -> tuple[float, str]:
  m = p["gap_margin"][unit]
  ref = _finite(reference)
  rel = m["relative"] * abs(float(np.median(ref))) if ref.size else 0.0
  value = max(m["absolute"], rel)
  return value, (
    f"±{fmt(value, 2)} (max of {fmt(m['absolute'], 2)} and {fmt(m['relative'], 2)} × the "
    f"median gap of {base})"
  )


def _hl(x, y, log: bool = False) -> float:
  x, y = _finite(x), _finite(y)
  if log:
    x, y = np.log(x[x > 0]), np.log(y[y > 0])
  d = inference.hodges_lehmann(x, y)
  return math.exp(d) if log and math.isfinite(d) else d


def _near_chance(t: Mapping, p: Mapping, target: float, scores: Sequence[float]) -> str:
  """Why a matched training loss is too close to chance to compare at (``""`` if it is not)."""
  chance, m = t.get("chance"), float(p["chance_margin"])
  if not chance:
    return ""
  loss = stats.as_float(chance.get("loss"))
  if math.isfinite(loss) and target >= (1 - m) * loss:
    return (
      f"the matched training loss {fmt(target)} lies within {fmt(100 * m, 2)}% of chance "
      f"({fmt(loss)}): it compares untrained networks"
    )
  s = _finite(scores)
  score = float(chance["score"])
  if s.size and float(np.median(s)) <= score + m * (1 - score):
    return (
      f"the train score at the matched loss ({fmt(float(np.median(s)))}) lies within "
      f"{fmt(100 * m, 2)}% of chance ({fmt(score)}): it compares untrained networks"
    )
  return ""


def _two_sample(
  t: Mapping,
  p: Mapping,
  claim: str,
  task: str,
  key: str,
  metric: str,
  blocks: Mapping[str, tuple[Sequence, Sequence]],
  at_loss: tuple[Sequence, Sequence] | None,
  kind: str,
  claimed: str,
  base: str = "BPTT",
) -> Candidate:
  """A rank contrast at the headline point, or at the matched loss when no run fits there."""
  headline = protocol_lib.headline_block(p)
  x, y = blocks[headline]
  log = kind == "log_shift"
  others = {
    POINT_NAMES[w]: _hl(*blocks[w], log=log) for w in POINT_NAMES if w != headline and w in blocks
  }
  where, reason = POINT_NAMES[headline], ""
  if not _finite(x).size or not _finite(y).size:
    ml = t.get("matched_loss") or {}
    if at_loss is None or not ml:
      who = "the rule" if not _finite(x).size else base
      reason = f"no run of {who} fits, and no matched training loss"
    else:
      x, y = at_loss
      where = f"at train loss {fmt(ml['target'])}"
      scores = at_loss_scores(t, key)
      reason = _near_chance(t, p, ml["target"], scores)
      if not reason and (not _finite(x).size or not _finite(y).size):
        reason = f"no run of {'the rule' if not _finite(x).size else base} reaches that loss"
  if metric == "lambda":
    if not (_finite(x).size or _finite(y).size) and not reason:
      reason = "λ_max not measured"
    margin = math.log(float(p["lambda_margin"]))
    text = f"λ ratio within [{fmt(1 / float(p['lambda_margin']), 3)}, {fmt(p['lambda_margin'])}]"
    x, y = _finite(x), _finite(y)
    x, y = np.log(x[x > 0]), np.log(y[y > 0])
  else:
    margin, text = _margin_gap(p, metric, y, base)
  return Candidate(claim, task, key, where, kind, claimed, (x, y), margin, text, reason, others)


def at_loss_scores(t: Mapping, key: str) -> list[float]:
  """The train scores at the matched loss of the rule (or remedy ``variant/rule``) and BPTT."""
  ml = t.get("matched_loss") or {}
  rules = ml.get("rules", {})
  out = list((rules.get(REFERENCE_RULE, {}).get("train_acc") or {}).get("values") or [])
  if "/" in key:
    variant, rule = key.split("/", 1)
    e = t["remedies"][variant][rule].get("at_loss", {})
    out += list((e.get("train_acc") or {}).get("values") or [])
  else:
    out += list((rules.get(key, {}).get("train_acc") or {}).get("values") or [])
  return out


def _reference_reason(t: Mapping, p: Mapping) -> str:
  ref = t["rules"].get(REFERENCE_RULE)
  if ref is None:
    return "no BPTT runs"
  if ref["fit_ever"] < int(p["min_reference_fits"]):
    return (
      f"the reference rule does not fit: BPTT fits in {ref['fit_ever']} of {ref['runs']} runs "
      f"(fewer than {p['min_reference_fits']})"
    )
  return ""


def _values(block: Mapping, metric: str) -> list:
  return list((block.get(metric) or {}).get("values") or [])


def candidates(task: str, t: Mapping, p: Mapping) -> list[Candidate]:
  """Every contrast of every claim for one task of :func:`credit.reproduction.numbers.build`."""
  out: list[Candidate] = []
  unit = t.get("gap_unit") or protocol_lib.gap_unit(p, task)
  ref = t["rules"].get(REFERENCE_RULE)
  ref_reason = _reference_reason(t, p)
  ml_rules = (t.get("matched_loss") or {}).get("rules", {})
  headline = protocol_lib.headline_block(p)
  for rule, e in t["rules"].items():
    if rule == REFERENCE_RULE or ref is None:
      continue
    for claim, metric, kind in (("worse_gap", unit, "shift"), ("sharper", "lambda", "log_shift")):
      blocks = {w: (_values(e[w], metric), _values(ref[w], metric)) for w in POINT_NAMES}
      at_loss = (
        (_values(ml_rules.get(rule, {}), metric), _values(ml_rules.get(REFERENCE_RULE, {}), metric))
        if ml_rules
        else None
      )
      c = _two_sample(t, p, claim, task, rule, metric, blocks, at_loss, kind, "greater")
      out.append(c._replace(reason=ref_reason or c.reason))
    x, y = _values(e[headline], unit), _values(ref[headline], unit)
    reason = ref_reason or (
      "" if _finite(x).size >= 2 and _finite(y).size >= 2 else "fewer than 2 runs that fit per rule"
    )
    out.append(
      Candidate(
        "more_variable",
        task,
        rule,
        POINT_NAMES[headline],
        "spread",
        "greater",
        (x, y),
        math.nan,
        "",
        reason,
        {},
      )
    )
    fitted = (e["fit_ever"], e["runs"], ref["fit_ever"], ref["runs"])
    out.append(
      Candidate("fit", task, rule, "ever", "fit", "greater", fitted, math.nan, "", ref_reason, {})
    )
  rel = (t.get("relations") or {}).get(headline)
  if rel:
    s = rel["samples"]
    pairs = sum(
      math.isfinite(stats.as_float(a)) and math.isfinite(stats.as_float(b))
      for a, b in zip(s["lambda"], s["gap"], strict=True)
    )
    groups = len(set(s["rule"]))
    reason = "" if pairs - 2 - (groups - 1) >= 2 else "too few runs that fit with λ_max measured"
    margin = float(p["correlation_margin"])
    out.append(
      Candidate(
        "correlation",
        task,
        "pooled",
        POINT_NAMES[headline],
        "correlation",
        "greater",
        (s["lambda"], s["gap"], s["rule"]),
        margin,
        f"r within ±{fmt(margin, 2)}",
        reason,
        {},
      )
    )
  out += _theory_candidates(task, t)
  for variant, per_rule in t.get("remedies", {}).items():
    for rule, e in per_rule.items():
      blocks = {
        w: (_values(e[w], unit), list(e[w][unit].get("base_values") or []))
        for w in POINT_NAMES
        if w in e
      }
      if headline not in blocks:
        continue
      al = e.get("at_loss")
      at_loss = (_values(al, unit), list(al.get("base_values", {}).get(unit) or [])) if al else None
      key = f"{variant}/{rule}"
      out.append(
        _two_sample(
          t, p, "remedies", task, key, unit, blocks, at_loss, "shift", "less", f"{rule} (base)"
        )
      )
  return out


def _theory_candidates(task: str, t: Mapping) -> list[Candidate]:
  th = t.get("threshold") or {}
  edges = {rule: e["edge"] for rule, e in t["rules"].items() if e.get("edge")}
  if not th.get("formula") or not edges:
    why = "no threshold derived for the optimizer" if not th.get("formula") else "no λ_max"
    return [Candidate("theory", task, "all", "plateau", "band", "", (), math.nan, "", why, {})]
  if th["optimizer"] != "sgd":
    why = (
      f"the theorem's bound 2/(ηc) is derived for SGD; this task trains with {th['optimizer']} "
      "(its own edge, Adam's threshold on the preconditioned sharpness, is in (e2))"
    )
    return [Candidate("theory", task, "all", "plateau", "band", "", (), math.nan, "", why, {})]
  out = []
  for rule, e in edges.items():
    found = [r for r in e["per_run"] if r.get("found")]
    values = [stats.as_float(r.get("theory_stability_ratio_plateau")) for r in found]
    who = "" if e["population"] == "trained" else ", none fits: all kept runs"
    reason = ""
    if len(found) < MIN_PLATEAUS:
      reason = f"{len(found)}/{e['runs']} runs stop rising (fewer than {MIN_PLATEAUS})"
    elif not _finite(values).size:
      reason = "the theory probe was not measured"
    out.append(
      Candidate(
        "theory",
        task,
        rule,
        f"plateau, {len(found)}/{e['runs']} runs{who}",
        "band",
        "",
        (values,),
        math.nan,
        f"band [{fmt(eos.BAND[0])}, {fmt(eos.BAND[1])}]",
        reason,
        {},
      )
    )
  return out


def _min_p(c: Candidate) -> float:
  if c.kind in ("shift", "log_shift"):
    return inference.min_mann_whitney_p(_finite(c.samples[0]).size, _finite(c.samples[1]).size)
  if c.kind == "fit":
    fit_x, n_x, fit_y, n_y = c.samples
    return inference.fisher_less(0, n_x, n_y, n_y) if n_x and n_y else math.nan
  return 0.0  # spread, correlation, band: any level is reachable at the sizes they need


def _test(c: Candidate, level: float) -> inference.Directional:
  if c.kind in ("shift", "log_shift"):
    return inference.rank_shift(c.samples[0], c.samples[1], c.margin, level)
  if c.kind == "spread":
    return inference.spread(c.samples[0], c.samples[1], level)
  if c.kind == "correlation":
    return inference.partial_correlation(*c.samples, c.margin, level)
  if c.kind == "fit":
    return inference.fit_rates(*c.samples, level)
  raise ValueError(f"no test for kind {c.kind!r}")


def family_size(family: Sequence[Candidate], alpha: float) -> tuple[int, dict[int, str]]:
  """The tested family's size and, by index, the contrasts that cannot reach significance.

  A contrast whose smallest possible p times the family size is at least ``alpha``
  leaves the family; the size is recomputed until no further contrast leaves.
  """
  out: dict[int, str] = {}
  while True:
    testable = [i for i, c in enumerate(family) if not c.reason and i not in out]
    m = len(testable)
    dropped = False
    for i in testable:
      mp = _min_p(family[i])
      if not math.isfinite(mp) or mp * m >= alpha:
        out[i] = (
          f"fewer runs than can reach significance: {_n_text(family[i])}, smallest possible "
          f"p {fmt(mp, 2)} × {m} contrasts ≥ {fmt(alpha, 2)}"
        )
        dropped = True
    if not dropped:
      return m, out


def _n_text(c: Candidate) -> str:
  if c.kind == "fit":
    return f"n {c.samples[1]} vs {c.samples[3]}"
  if c.kind == "correlation":
    return f"n {len(c.samples[0])}"
  if c.kind == "band":
    return f"n {len(c.samples[0]) if c.samples else 0}"
  return f"n {_finite(c.samples[0]).size} vs {_finite(c.samples[1]).size}"


class Judged(NamedTuple):
  """A contrast with its verdict and the numbers behind it (one line of a claims cell)."""

  claim: str
  task: str
  key: str
  where: str
  verdict: str
  n: str
  estimate_name: str
  estimate: float
  ci: tuple[float, float]
  p: float  # the one-sided p of the verdict's test, Holm-adjusted (NaN: none)
  p_support: float  # Holm-adjusted one-sided p in the paper's direction
  p_contradict: float
  p_equivalent: float
  margin: str
  mde: float
  level: float  # the level a single contrast of the family had to pass first (α/m)
  reason: str
  others: dict


def _band_verdict(values, level: float) -> tuple[str, stats.Interval]:
  ci = stats.bootstrap_ci(values, level=level)
  where = eos.band_verdict(ci.low, ci.high)
  if where == "at the edge":
    return SUPPORTED, ci
  if where in ("below the edge", "above the edge"):
    return CONTRADICTED, ci
  return INCONCLUSIVE, ci


def judge_family(family: Sequence[Candidate], p: Mapping) -> list[Judged]:
  """Verdicts for one claim's contrasts over every task (module docstring)."""
  alpha = float(p["alpha"])
  m, unreachable = family_size(family, alpha)
  level = alpha / m if m else alpha
  tests: dict[int, inference.Directional] = {}
  for i, c in enumerate(family):
    if not c.reason and i not in unreachable and c.kind != "band":
      tests[i] = _test(c, level)
  idx = sorted(tests)

  def holm(pick) -> dict[int, float]:
    return dict(zip(idx, stats.holm([pick(tests[i], family[i]) for i in idx]), strict=True))

  support = holm(lambda d, c: d.greater if c.claimed == "greater" else d.less)
  contra = holm(lambda d, c: d.less if c.claimed == "greater" else d.greater)
  equiv = holm(lambda d, c: d.equivalence)
  out = []
  for i, c in enumerate(family):
    reason = c.reason or unreachable.get(i, "")
    name = ESTIMATE_NAMES[c.claim]
    nan2 = (math.nan, math.nan)
    base = dict(
      claim=c.claim,
      task=c.task,
      key=c.key,
      where=c.where,
      n=_n_text(c) if c.samples else "",
      estimate_name=name,
      margin=c.margin_text,
      level=level,
      others=c.others,
    )
    if reason:
      out.append(
        Judged(
          **base,
          verdict=NOT_TESTED,
          estimate=math.nan,
          ci=nan2,
          p=math.nan,
          p_support=math.nan,
          p_contradict=math.nan,
          p_equivalent=math.nan,
          mde=math.nan,
          reason=reason,
        )
      )
      continue
    if c.kind == "band":
      verdict, ci = _band_verdict(c.samples[0], 1 - level)
      out.append(
        Judged(
          **base,
          verdict=verdict,
          estimate=ci.estimate,
          ci=(ci.low, ci.high),
          p=math.nan,
          p_support=math.nan,
          p_contradict=math.nan,
          p_equivalent=math.nan,
          mde=math.nan,
          reason="",
        )
      )
      continue
    d = tests[i]
    ps, pc, pe = support[i], contra[i], equiv[i]
    if ps < alpha:
      verdict, pv = SUPPORTED, ps
    elif pc < alpha:
      verdict, pv = CONTRADICTED, pc
    elif math.isfinite(pe) and pe < alpha:
      verdict, pv = EQUIVALENT, pe
    else:
      verdict, pv = INCONCLUSIVE, ps
    est, ci, mde = d.estimate, d.ci, d.mde
    if c.kind == "log_shift":  # shown as a ratio
      est, ci = math.exp(est), (math.exp(ci[0]), math.exp(ci[1]))
      mde = math.exp(mde) if math.isfinite(mde) else mde
    out.append(
      Judged(
        **base,
        verdict=verdict,
        estimate=est,
        ci=tuple(ci),
        p=pv,
        p_support=ps,
        p_contradict=pc,
        p_equivalent=pe,
        mde=mde,
        reason="",
      )
    )
  return out


def judge(numbers: Mapping, p: Mapping) -> dict[str, list[Judged]]:
  """``{claim: [Judged]}`` over every task of ``numbers``, each claim one family."""
  by_claim: dict[str, list[Candidate]] = {key: [] for key, _ in CLAIMS}
  for task, t in numbers.items():
    for c in candidates(task, t, p):
      by_claim[c.claim].append(c)
  return {claim: judge_family(family, p) for claim, family in by_claim.items()}


def adjust(numbers: Mapping, p: Mapping | None = None) -> dict:
  """A copy of ``numbers`` with each task's ``verdicts``: ``{claim: [Judged as dict]}``."""
  p = p or protocol_lib.as_dict(protocol_lib.default())
  out = copy.deepcopy(dict(numbers))
  judged = judge(out, p)
  for task, t in out.items():
    t["verdicts"] = {
      claim: [j._asdict() for j in judged[claim] if j.task == task] for claim, _ in CLAIMS
    }
  return out


# ----------------------------------------------------------------- the table's cells


class Cell(NamedTuple):
  """One cell of the claims table: its verdicts (counted) and the evidence lines behind it."""

  verdict: str
  evidence: list[str]


NO_CONTRAST = {"remedies": "no remedy variant was run"}


def cell_verdict(verdicts: Sequence[str]) -> str:
  """The cell's heading: the one verdict of all its contrasts, or each verdict with its count."""
  if not verdicts:
    return NOT_TESTED
  if len(set(verdicts)) == 1:
    return verdicts[0]
  return " · ".join(f"{v} {verdicts.count(v)}" for v in VERDICTS if v in verdicts)


def line(j: Mapping) -> str:
  """One contrast as the claims table shows it: who, verdict, n, statistic [CI], p or MDE."""
  who = j["key"] if j["key"] not in ("all", "pooled") else ""
  head = f"{who} ({j['where']}" if who else f"({j['where']}"
  head += f", {j['n']})" if j["n"] else ")"
  if j["verdict"] == NOT_TESTED:
    return f"{head}: *not tested*: {j['reason']}"
  ci = j["ci"]
  text = (
    f"{head}: *{j['verdict']}*: {j['estimate_name']} {fmt(j['estimate'])} "
    f"[{fmt(ci[0])}, {fmt(ci[1])}]"
  )
  if j["claim"] == "theory":
    return text + f" (CI at {fmt(100 * (1 - j['level']), 3)}%), {j['margin']}"
  if j["verdict"] in (SUPPORTED, CONTRADICTED):
    text += f", one-sided p_Holm {fmt(j['p'], 2)}"
  elif j["verdict"] == EQUIVALENT:
    text += f", TOST {j['margin']}: p_Holm {fmt(j['p'], 2)}"
  else:
    text += f", one-sided p_Holm {fmt(j['p_support'], 2)}"
    if j["margin"]:
      text += f", TOST {j['margin']}: p_Holm {fmt(j['p_equivalent'], 2)}"
    text += f"; {mde_text(j)}"
  others = "; ".join(f"{k} {fmt(v)}" for k, v in j["others"].items() if math.isfinite(v))
  return text + (f"; {others}" if others else "")


def mde_text(j: Mapping) -> str:
  """The minimum detectable effect of an inconclusive contrast, or that none is reachable."""
  level = fmt(j["level"], 2)
  if not math.isfinite(j["mde"]):
    return f"no effect is detectable with power 0.8 at α {level} at this n"
  return f"MDE {fmt(j['mde'])} (power 0.8, α {level})"


def table(numbers: Mapping) -> dict[str, dict[str, Cell]]:
  """``{claim: {task: Cell}}`` for every claim of :data:`CLAIMS` and task of ``numbers``.

  Args:
    numbers: the output of :func:`adjust`.
  """
  out: dict[str, dict[str, Cell]] = {key: {} for key, _ in CLAIMS}
  for task, t in numbers.items():
    for key, _ in CLAIMS:
      judged = t["verdicts"][key]
      out[key][task] = Cell(
        cell_verdict([j["verdict"] for j in judged]),
        [line(j) for j in judged] or [NO_CONTRAST.get(key, "no contrast")],
      )
  return out
