r"""Every number of a report, computed from results files only.

A report reads either one **sweep workdir** (``<workdir>/results.csv``, as
written by ``experiments/sweep.py``: one section per task, no remedies) or a
**reproduction workdir** (``experiments/reproduce.py``)::

  <workdir>/<task>/base/results.csv        every rule, no remedy
  <workdir>/<task>/<variant>/results.csv   a remedy variant (some rules, one remedy)

Per task, over the runs that did not diverge:

* **fit**: the task's fit criterion (``fit_criteria`` of the sweep's
  ``sweep.json``, else :data:`DEFAULT_FIT`, said so); per rule the runs that
  meet it at some evaluation, at the end, and the seeds that never do;
* **distinct rules**: two rules whose results are identical in every seed and
  evaluation (on networks without autapses ``rflo`` is ``eprop_random``) are
  detected here (:func:`identical_rules`); the later one is reported as equal
  to the earlier and left out of every statistic, so nothing is counted twice;
* **operating points** of each trained run (every metric, gaps in three units:
  ``gap_acc`` raw, ``gap_norm`` chance-normalized, ``gap_clean`` against the clean test
  set, :func:`derived_gaps`; ``gap_delay`` and ``gap_noise`` where a task has
  single-factor shift splits): ``matched``, its first evaluation meeting the criterion
  (:func:`credit.analysis.fit.first_fit`); ``window``, its mean over the evaluations from
  there to the protocol's ``window`` x the budget later (the verdicts' point); ``last``,
  its mean over the last ``last`` of the budget. Per rule, each point's per-run
  ``values`` and, against BPTT, the difference of means with a bootstrap 95% CI, the
  Hodges-Lehmann shift, Cohen's d, Cliff's delta and the two-sided Mann-Whitney p; runs
  that never fit are left out;
* **end**: the same at the end of training, over the runs that fit there;
* **variability** / **spread**: the gap's variance ratio against BPTT with the
  Brown-Forsythe test (at first fit on the raw gap; at each point on the primary gap);
* **relation** / **relations**: the :math:`\lambda_{max}`-gap rank correlation within each
  rule, pooled, and pooled with the rule partialled out (at first fit on the raw gap; at
  each point on the primary gap, with the pairs kept for the claims);
* **theory**: the threshold that applies to the task's optimizer (SGD
  :math:`2/\eta` and the rule's :math:`2/(\eta c)`; momentum :math:`(2 + 2\beta)/\eta`;
  Adam :math:`(2 + 2\beta_1)/((1 - \beta_1)\eta)` on the preconditioned
  sharpness ``lambda_max_precond``, Cohen et al. 2022) and the theory probe's
  end-of-training numbers;
* **edge**: per run, where its sharpness stops rising
  (:func:`credit.analysis.edge_of_stability.plateau`) and there the ratio of its
  sharpness to the optimizer's threshold, :math:`\eta c \lambda_{max}/2` (SGD: the
  rule's own edge) and the radius of :math:`I - \eta J_{rule}` (SGD); per rule the
  median of each with a bootstrap 95% CI and where it lies against the band
  around 1 (trained runs: those that meet the fit criterion at some evaluation;
  all kept runs, said so, for a rule none of whose runs does);
* **matched_loss**: gap and :math:`\lambda_{max}` interpolated at a common
  training loss, the highest of the rules' median final training losses
  (:func:`credit.analysis.fit.at_loss`), for when a rule never meets the criterion;
* **remedies**: each remedy variant against the same rule without it, at every
  operating point and at the matched training loss;
* **fit_rates**: per rule the runs, diverged runs and runs that fit at some evaluation.

The chance levels, the windows and the primary gap come from the verdict protocol
(:mod:`credit.reproduction.protocol`); the verdicts themselves from
:mod:`credit.reproduction.claims`.

:math:`\lambda_{max}` is the curvature probe's ``lambda_max`` where it was
measured, else the theory probe's ``theory_lambda_max``. Spiking runs that measure
both curvature definitions (``curvature.also_surrogate``: ``lambda_max`` of the
smoothed proxy, plus :data:`SECOND_CURVATURE` of the surrogate-gradient Jacobian)
carry the second definition's metrics through the matched, end and matched-loss
blocks beside ``lambda`` (``extra_curvature``; descriptive, outside the claims).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

from credit.analysis import edge_of_stability as eos
from credit.analysis import fit as fit_lib
from credit.analysis import inference, stats
from credit.errors import ResultsFileError
from credit.reproduction import protocol as protocol_lib
from credit.training import outputs

import numpy as np

BASE = "base"
SINGLE = "sweep"  # the variant name of a sweep workdir's one sweep
GAPS = ("gap_acc", "gap_loss")
# Derived per evaluation (:func:`derived_gaps`): the chance-normalized and the clean-test gap.
DERIVED_GAPS = ("gap_norm", "gap_clean")
# Tasks with single-factor shift splits (delay only, noise only) get a gap for each, described
# beside the others (never a verdict's unit): ``gap_delay``, ``gap_noise``.
SINGLE_FACTOR_SPLITS = ("delay", "noise")
SPLIT_GAPS = tuple(f"gap_{s}" for s in SINGLE_FACTOR_SPLITS)
HEADLINE_GAP = "gap_acc"
SCORES = ("train_acc", "test_acc")
# Operating points of a trained run (:func:`run_records`): the protocol's names -> blocks.
POINTS = protocol_lib.POINT_BLOCKS
LAMBDA_METRICS = ("lambda_max", "theory_lambda_max")
# The surrogate-gradient Jacobian of a spiking run measured beside the smoothed proxy's
# lambda_max: its symmetric part's top eigenvalue and its largest real eigenvalue.
SECOND_CURVATURE = ("surrogate_lambda_max", "jacobian_max_real")
PRECOND_METRIC = eos.PRECOND_METRIC  # Adam: λ_max of P^{-1/2} H P^{-1/2}
REFERENCE_RULE = "bptt"
# Used when a sweep.json declares no fit criterion (results written before the field existed).
DEFAULT_FIT = fit_lib.FitCriterion("train_acc", 0.95)
# Two rules are the same when every shared metric agrees to this relative tolerance.
IDENTICAL_RTOL = 1e-6


# ------------------------------------------------------------------- loading


def find_sweeps(workdir: str) -> dict[str, dict[str, str]]:
  """``{task: {variant: sweep dir}}`` of a reproduction or a single sweep workdir.

  A folder with its own ``results.csv`` is one sweep: each of its tasks gets
  the variant :data:`SINGLE`. Otherwise every ``<task>/<variant>/results.csv``.
  """
  if os.path.exists(os.path.join(workdir, "results.csv")):
    rows = outputs.read_results(os.path.join(workdir, "results.csv"))
    return {task: {SINGLE: workdir} for task in sorted({r["task"] for r in rows})}
  found: dict[str, dict[str, str]] = {}
  for task in sorted(os.listdir(workdir)):
    task_dir = os.path.join(workdir, task)
    if not os.path.isdir(task_dir):
      continue
    for variant in sorted(os.listdir(task_dir)):
      if os.path.exists(os.path.join(task_dir, variant, "results.csv")):
        found.setdefault(task, {})[variant] = os.path.join(task_dir, variant)
  return found


def base_variant(variants: Mapping[str, str]) -> str | None:
  """The variant without remedies: ``base`` (reproduction) or ``sweep`` (single sweep)."""
  return next((v for v in (BASE, SINGLE) if v in variants), None)


def sweep_config(sweep_dir: str) -> dict:
  """The sweep's ``sweep.json`` as a dict (empty when the file is not there)."""
  path = os.path.join(sweep_dir, "sweep.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def task_rows(sweep_dir: str, task: str) -> list[dict]:
  rows = outputs.read_results(os.path.join(sweep_dir, "results.csv"))
  return [r for r in rows if r["task"] == task]


def fit_criterion(sweep: Mapping, task: str) -> tuple[fit_lib.FitCriterion, bool]:
  """The task's criterion and whether the sweep declared it (else :data:`DEFAULT_FIT`)."""
  spec = (sweep.get("fit_criteria") or {}).get(task)
  return (fit_lib.criterion(spec), True) if spec else (DEFAULT_FIT, False)


def optimizer(sweep: Mapping, task: str) -> dict:
  """The task's optimizer block in ``sweep.json`` (empty when unknown)."""
  return dict(sweep.get("tasks", {}).get(task, {}).get("optimizer", {}) or {})


# ------------------------------------------------------------------- runs


def lambda_metric(rows: Sequence[Mapping]) -> str | None:
  """``lambda_max`` if any run measured it, else ``theory_lambda_max``, else None."""
  for name in LAMBDA_METRICS:
    if any(math.isfinite(stats.as_float(r.get(name))) for r in rows):
      return name
  return None


def extra_curvature(rows: Sequence[Mapping]) -> tuple[str, ...]:
  """The :data:`SECOND_CURVATURE` metrics some run measured (none for a rate network)."""
  return tuple(
    m for m in SECOND_CURVATURE if any(math.isfinite(stats.as_float(r.get(m))) for r in rows)
  )


def ordered_rules(names) -> list[str]:
  from credit.analysis.figures import RULE_ORDER

  order = {r: i for i, r in enumerate(RULE_ORDER)}
  return sorted(set(names), key=lambda r: (order.get(r, len(order)), r))


def identical_rules(rows: Sequence[Mapping]) -> dict[str, str]:
  """``{rule: earlier rule it equals}`` for rules whose results match in every run and step.

  Two rules match when they have the same (learning rate, seed, step) keys and
  every metric both have agrees to :data:`IDENTICAL_RTOL` (NaN equal to NaN).
  The earlier rule in the report's rule order is kept.
  """
  by_rule: dict[str, dict[tuple, Mapping]] = {}
  for r in rows:
    by_rule.setdefault(r["rule"], {})[(r["learning_rate"], r["seed"], r["step"])] = r
  names = [m for m in stats.metric_names(rows) if m != "learning_rate"]
  same: dict[str, str] = {}
  rules = ordered_rules(by_rule)
  for i, later in enumerate(rules):
    for earlier in rules[:i]:
      if earlier in same or by_rule[earlier].keys() != by_rule[later].keys():
        continue
      a = [[stats.as_float(by_rule[earlier][k].get(m)) for m in names] for k in by_rule[earlier]]
      b = [[stats.as_float(by_rule[later][k].get(m)) for m in names] for k in by_rule[earlier]]
      if np.allclose(a, b, rtol=IDENTICAL_RTOL, atol=0.0, equal_nan=True):
        same[later] = earlier
        break
  return same


def derived_gaps(rows: Sequence[Mapping], chance_score: float | None) -> list[dict]:
  """Copies of ``rows`` with ``gap_norm`` and ``gap_clean`` beside the raw gap.

  ``gap_norm = (train − test) / (train − chance)``: the fraction of the run's
  above-chance score that the shift takes away (NaN without a chance level, or at or
  below chance); ``gap_clean = train − clean test`` (NaN without ``test_clean_acc``).
  """
  out = []
  for r in rows:
    train, test = stats.as_float(r.get("train_acc")), stats.as_float(r.get("test_acc"))
    above = train - chance_score if chance_score is not None else math.nan
    norm = (train - test) / above if above > 0 else math.nan
    clean = train - stats.as_float(r.get("test_clean_acc"))
    extra = {
      f"gap_{split}": train - stats.as_float(r[f"test_{split}_acc"])
      for split in SINGLE_FACTOR_SPLITS
      if f"test_{split}_acc" in r
    }
    out.append({**r, "gap_norm": norm, "gap_clean": clean, **extra})
  return out


def run_records(
  rows: Sequence[Mapping],
  fit: fit_lib.FitCriterion,
  lam: str | None,
  extra: Sequence[str] = (),
  window: float = 0.25,
  last: float = 0.25,
) -> list[dict]:
  """One record per run: its final values and its operating points.

  ``matched``: its first evaluation meeting ``fit`` (None if it never does);
  ``window``: its means over the evaluations from there to ``window`` x the budget
  later; ``last``: its means over the last ``last`` of the budget (runs that fit at
  some evaluation only, as the others are not trained); ``fit_end``. The budget is
  the last step of the run's cell (task, rule, learning rate). ``extra`` metrics
  (:func:`extra_curvature`) are carried into every point.
  """
  names = [*GAPS, *DERIVED_GAPS, *SPLIT_GAPS, *SCORES, "train_loss", *([lam] if lam else [])]
  names += list(extra)
  groups = stats.group_rows(rows, stats.RUN_COLUMNS)
  budgets: dict[tuple, float] = {}
  for r in rows:
    key = tuple(r[c] for c in stats.CELL_COLUMNS)
    budgets[key] = max(budgets.get(key, 0.0), stats.as_float(r["step"]))
  out = []
  for final in stats.final_records(rows):
    run = groups[tuple(final[c] for c in stats.RUN_COLUMNS)]
    budget = budgets[tuple(final[c] for c in stats.CELL_COLUMNS)]
    rec = dict(final)
    rec["lambda"] = stats.as_float(final.get(lam)) if lam else math.nan
    matched = fit_lib.first_fit(run, fit, names)
    points = {"matched": matched, "window": None, "last": None}
    if matched is not None:
      start = matched["step"]
      points["window"] = fit_lib.window_mean(run, start, start + window * budget, names)
      points["last"] = fit_lib.window_mean(run, (1 - last) * budget, budget, names)
    for point in points.values():
      if point is not None:
        point["lambda"] = point.get(lam, math.nan) if lam else math.nan
    rec.update(points)
    rec["fit_end"] = (not final["diverged"]) and fit_lib.fits_at_end(run, fit)
    rec["_rows"] = run
    out.append(rec)
  return out


def column(records: Sequence[Mapping], metric: str, where: str = "final") -> list[float]:
  """``metric`` per record: final values, or those ``where="matched"`` (records that fit)."""
  if where == "final":
    return [stats.as_float(r.get(metric)) for r in records]
  return [stats.as_float(r[where].get(metric)) for r in records if r.get(where)]


def compare(x: Sequence[float], y: Sequence[float]) -> dict:
  """``x`` against ``y``: difference of means with its bootstrap CI and the rank statistics.

  ``hl``: the Hodges-Lehmann shift (the estimate that goes with the rank test);
  ``mw_p``: two-sided Mann-Whitney p (the claims use its one-sided forms,
  :mod:`credit.analysis.inference`).
  """
  d = stats.bootstrap_diff_ci(x, y)
  return {
    "diff": d.estimate,
    "ci": [d.low, d.high],
    "hl": inference.hodges_lehmann(x, y),
    "cohens_d": stats.cohens_d(x, y),
    "cliffs_delta": stats.cliffs_delta(x, y),
    "mw_p": stats.mann_whitney_p(x, y),
    "n": [int(stats.finite(x).size), int(stats.finite(y).size)],
  }


# ------------------------------------------------------------------- per task

METRICS = ("gap_acc", *DERIVED_GAPS, "gap_loss", *SCORES, "train_loss", "lambda")
# Described per rule but not contrasted with BPTT (no table or claim reads the contrast).
DESCRIBED_ONLY = ("train_acc", "test_acc", "train_loss")


def _block(
  runs: Sequence[Mapping],
  reference: Sequence[Mapping] | None,
  where: str,
  extra: Sequence[str] = (),
) -> dict:
  """Per metric: its description, the per-run ``values`` (run order, NaN kept) and, with a
  reference, ``vs_bptt`` (:func:`compare`)."""
  out = {}
  for metric in (*METRICS, *extra):
    values = column(runs, metric, where)
    out[metric] = {**stats.describe(values), "values": values}
    if reference is not None and metric not in DESCRIBED_ONLY:
      out[metric]["vs_bptt"] = compare(values, column(reference, metric, where))
  return out


def threshold(opt: Mapping, eta: float) -> dict:
  """The edge-of-stability threshold that applies to the optimizer, at learning rate ``eta``.

  See :func:`credit.analysis.edge_of_stability.optimizer_threshold`.
  """
  return eos.optimizer_threshold(opt, eta)


def median_ci(values, band: tuple[float, float] = eos.BAND) -> dict:
  """``n``, ``median`` and its bootstrap 95% ``ci``, and the ``verdict`` against ``band``."""
  m = stats.bootstrap_ci(values)
  return {
    "n": int(stats.finite(values).size),
    "median": m.estimate,
    "ci": [m.low, m.high],
    "verdict": eos.band_verdict(m.low, m.high, band),
  }


RUN_EDGE_KEYS = (
  "found",
  "rose",
  "step",
  "value",
  "optimizer_ratio",
  "optimizer_ratio_plateau",
  "theory_stability_ratio",
  "theory_stability_ratio_plateau",
  "update_map_radius",
  "update_map_radius_plateau",
)
WHERE = ("plateau", "at")  # median over the plateau (the claims' number), value at its start


def run_edge(run: Mapping, lam: str | None, opt: Mapping) -> dict:
  """One run's plateau of λ_max and its ratios there (module docstring, **edge**).

  ``optimizer_ratio`` (at the plateau's start) and ``optimizer_ratio_plateau`` (median
  over it): the sharpness the optimizer's threshold bounds (λ_max of H, or Adam's
  preconditioned ``lambda_max_precond``, whose own plateau is used) over the threshold.
  """
  rows = fit_lib.healthy_rows(run["_rows"])
  if lam is None:
    return {"found": False, "rose": False, "measured": 0, "step": math.nan}
  out = eos.at_plateau(rows, lam, ("theory_stability_ratio", "update_map_radius"))
  th = eos.optimizer_threshold(opt, stats.as_float(run["learning_rate"])) if opt else {}
  out["optimizer_ratio"] = out["optimizer_ratio_plateau"] = math.nan
  source = None
  bounded = eos.bounded_metric(th.get("applies_to"))
  if bounded == "lambda_max":
    source = out
  elif bounded == PRECOND_METRIC and _measured(rows, PRECOND_METRIC):
    source = out["precond"] = eos.at_plateau(rows, PRECOND_METRIC)
  if source is not None and source["found"]:
    out["optimizer_ratio"] = source["series"] / th["value"]
    out["optimizer_ratio_plateau"] = source["series_plateau"] / th["value"]
  return out


def _measured(rows: Sequence[Mapping], name: str) -> bool:
  return any(math.isfinite(stats.as_float(r.get(name))) for r in rows)


def _ratios(found: Sequence[Mapping], name: str) -> dict:
  """``{where: median_ci}`` of one ratio over the runs whose sharpness stopped rising."""
  return {
    where: median_ci([r["edge"][name if where == "at" else f"{name}_plateau"] for r in found])
    for where in WHERE
  }


def _edge(runs: Sequence[dict], trained: bool, th: Mapping) -> dict:
  """Per rule: plateaus found and the medians (CI) of the ratios there (module docstring)."""
  found = [r for r in runs if r["edge"]["found"]]
  precond = eos.bounded_metric(th.get("applies_to")) == PRECOND_METRIC
  measured = bool(th.get("formula")) and (
    (not precond) or any("precond" in r["edge"] for r in runs)
  )
  out = {
    "population": "trained" if trained else "kept",
    "runs": len(runs),
    "found": len(found),
    "still_rising": sorted(int(r["seed"]) for r in runs if not r["edge"]["found"]),
    "never_rose": sum(not r["edge"]["rose"] for r in found),  # per_run: each run's values
    "plateau_step": stats.describe([r["edge"]["step"] for r in found]),
    "optimizer_edge": {**_ratios(found, "optimizer_ratio"), "measured": measured},
    "per_run": [
      {
        "seed": int(r["seed"]),
        **{k: r["edge"].get(k, math.nan) for k in RUN_EDGE_KEYS},
      }
      for r in runs
    ],
  }
  if th.get("optimizer") == "sgd":  # the rule's own bound 2/(ηc) is derived for SGD only
    out["own_edge"] = _ratios(found, "theory_stability_ratio")
    out["update_map_radius"] = _ratios(found, "update_map_radius")
  return out


def _theory(runs: Sequence[Mapping]) -> dict:
  """End-of-training theory probe numbers (kept runs)."""
  if not any(math.isfinite(stats.as_float(r.get("theory_c"))) for r in runs):
    return {}
  measured = column(runs, "theory_lambda_max")
  bound = column(runs, "predicted_lambda_bound")
  below = [m < b for m, b in zip(measured, bound, strict=True) if math.isfinite(m) and b == b]
  eta = stats.describe(column(runs, "theory_eta"))["mean"]
  bounds = [b for b in bound if not math.isnan(b)]  # c <= 0: an infinite bound, kept
  return {
    "c": stats.describe(column(runs, "theory_c")),
    "eta": eta,
    "gd_bound": 2.0 / eta if eta > 0 else math.nan,
    "predicted_bound": {
      **stats.describe(bound),
      "median": float(np.median(bounds)) if bounds else math.nan,
      "infinite": int(sum(math.isinf(b) for b in bounds)),
    },
    "measured": stats.describe(measured),
    "stability_ratio": stats.describe(column(runs, "theory_stability_ratio")),
    "update_map_radius": stats.describe(column(runs, "update_map_radius")),
    "fraction_below_bound": float(np.mean(below)) if below else math.nan,
  }


def _matched_loss(
  kept: Sequence[Mapping], rules: Sequence[str], lam: str | None, extra: Sequence[str] = ()
) -> dict:
  """Gap and lambda (and ``extra``) at the highest of the rules' median final training losses."""
  medians = [
    stats.describe(column([r for r in kept if r["rule"] == rule], "train_loss"))["median"]
    for rule in rules
  ]
  medians = [m for m in medians if math.isfinite(m)]
  if not medians:
    return {}
  target = max(medians)
  names = [*GAPS, *DERIVED_GAPS, *SCORES, "train_loss", *([lam] if lam else []), *extra]
  for r in kept:
    at = fit_lib.at_loss(r["_rows"], target, names)
    if at is not None:
      at["lambda"] = at.get(lam, math.nan) if lam else math.nan
    r["at_loss"] = at
  reference = [r for r in kept if r["rule"] == REFERENCE_RULE]
  out = {"target": target, "rules": {}}
  for rule in rules:
    runs = [r for r in kept if r["rule"] == rule]
    entry = {"runs": len(runs), "reached": sum(r["at_loss"] is not None for r in runs)}
    entry.update(_block(runs, reference if rule != REFERENCE_RULE else None, "at_loss", extra))
    out["rules"][rule] = entry
  return out


def _remedy_at_loss(
  runs: Sequence[dict], base_runs: Sequence[Mapping], target: float, lam: str | None
) -> dict:
  """A remedy's runs against the same rule's base runs at the task's matched training loss."""
  names = [*GAPS, *DERIVED_GAPS, *SCORES, "train_loss", *([lam] if lam else [])]
  for r in runs:
    at = fit_lib.at_loss(r["_rows"], target, names)
    if at is not None:
      at["lambda"] = at.get(lam, math.nan) if lam else math.nan
    r["at_loss"] = at
  out: dict = {"reached": sum(r["at_loss"] is not None for r in runs)}
  for metric in METRICS:
    x, y = column(runs, metric, "at_loss"), column(base_runs, metric, "at_loss")
    out[metric] = {**stats.describe(x), "values": x}
    if metric not in DESCRIBED_ONLY:
      out[metric]["vs_base"] = compare(x, y)
  return out


def _relation(runs: Sequence[Mapping], rules: Sequence[str], gap: str, where: str) -> dict:
  """λ_max against the gap at one operating point: within each rule, pooled, rule partialled out.

  ``samples`` keeps the pairs and their rules (the claims test them one-sided).
  """
  at = [r for r in runs if r["rule"] in rules and r.get(where)]
  lam, gaps = column(at, "lambda", where), column(at, gap, where)
  groups = [r["rule"] for r in at]
  return {
    "gap": gap,
    "within": {
      rule: stats.correlation(
        [v for v, g in zip(lam, groups, strict=True) if g == rule],
        [v for v, g in zip(gaps, groups, strict=True) if g == rule],
      )._asdict()
      for rule in rules
    },
    "pooled": stats.correlation(lam, gaps)._asdict(),
    "partial": stats.rank_partial_correlation(lam, gaps, groups)._asdict(),
    "samples": {"lambda": lam, "gap": gaps, "rule": groups},
  }


def task_numbers(task: str, variants: Mapping[str, str], claims: Mapping | None = None) -> dict:
  """Every number of one task (module docstring); ``variants`` as :func:`find_sweeps`.

  ``claims``: the verdict protocol (:mod:`credit.reproduction.protocol`; default: its
  :func:`~credit.reproduction.protocol.default`): chance levels, operating-point windows and
  the primary gap unit.
  """
  claims = claims or protocol_lib.as_dict(protocol_lib.default())
  chance = protocol_lib.chance(claims, task)
  gap = protocol_lib.gap_unit(claims, task)
  window, last = float(claims["window"]), float(claims["last"])
  base = base_variant(variants)
  sweep = sweep_config(variants[base])
  chance_score = chance["score"] if chance else None
  rows = derived_gaps(task_rows(variants[base], task), chance_score)
  fit, declared = fit_criterion(sweep, task)
  lam = lambda_metric(rows)
  extra = extra_curvature(rows)
  same = identical_rules(rows)
  records = run_records(rows, fit, lam, extra, window, last)
  split = tuple(g for g in SPLIT_GAPS if any(math.isfinite(stats.as_float(r.get(g))) for r in rows))
  described = (*extra, *split)
  kept = [r for r in records if not r["diverged"]]
  rules = [r for r in ordered_rules(r["rule"] for r in records) if r not in same]
  has_reference = REFERENCE_RULE in rules
  by_rule = {rule: [r for r in kept if r["rule"] == rule] for rule in rules}
  reference = by_rule.get(REFERENCE_RULE, [])
  opt = optimizer(sweep, task)
  lrs = stats.finite(column(records, "learning_rate"))
  eta = float(lrs[0]) if lrs.size else math.nan
  th = threshold(opt, eta) if opt else {}
  out: dict = {
    "lambda_metric": lam,
    **({"extra_curvature": list(extra)} if extra else {}),
    **({"split_gaps": list(split)} if split else {}),
    "optimizer": opt.get("name"),
    "threshold": th,
    "edge_params": {
      "tolerance": eos.TOLERANCE,
      "window": eos.WINDOW,
      "min_after": eos.MIN_AFTER,
      "band": list(eos.BAND),
    },
    "fit": {"metric": fit.metric, "at_least": fit.at_least, "declared": declared},
    "chance": chance,
    "gap_unit": gap,
    "points": {"window": window, "last": last},
    "identical": same,
    "rules": {},
  }
  for rule in rules:
    all_runs = [r for r in records if r["rule"] == rule]
    runs = by_rule[rule]
    ref = reference if rule != REFERENCE_RULE and has_reference else None
    entry = {
      "runs": len(all_runs),
      "diverged": sum(r["diverged"] for r in all_runs),
      "fit_ever": sum(r["matched"] is not None for r in runs),
      "fit_end": sum(r["fit_end"] for r in runs),
      "never_fit": sorted(int(r["seed"]) for r in runs if r["matched"] is None),
      "learning_rate": stats.describe(column(runs, "learning_rate"))["mean"],
      "steps": max((int(r["step"]) for r in all_runs), default=0),
      "fit_step": stats.describe(column(runs, "step", "matched")),
      "matched": _block(runs, ref, "matched", described),
      "window": _block(runs, ref, "window", described),
      "last": _block(runs, ref, "last", described),
      "end": _block(
        [r for r in runs if r["fit_end"]],
        [r for r in ref if r["fit_end"]] if ref else None,
        "final",
        described,
      ),
      "all_end": _block(runs, ref, "final", described),
      "theory": _theory(runs),
    }
    if th:
      trained = [r for r in runs if r["matched"] is not None]
      for r in trained or runs:
        r["edge"] = run_edge(r, lam, opt)
      entry["edge"] = _edge(trained or runs, bool(trained), th)
    if ref is not None:
      entry["variability"] = stats.brown_forsythe(
        column(runs, HEADLINE_GAP, "matched"), column(ref, HEADLINE_GAP, "matched")
      )._asdict()
      entry["spread"] = {
        where: stats.brown_forsythe(column(runs, gap, where), column(ref, gap, where))._asdict()
        for where in POINTS.values()
      }
    out["rules"][rule] = entry
  out["fit_rates"] = [
    {"rule": rule, "runs": e["runs"], "diverged": e["diverged"], "fit": e["fit_ever"]}
    for rule, e in out["rules"].items()
  ]
  out["relation"] = _relation(kept, rules, HEADLINE_GAP, "matched")
  out["relations"] = {where: _relation(kept, rules, gap, where) for where in POINTS.values()}
  out["matched_loss"] = _matched_loss(kept, rules, lam, extra)
  out["remedies"] = {}
  for variant, sweep_dir in variants.items():
    if variant == base:
      continue
    v_rows = derived_gaps(task_rows(sweep_dir, task), chance_score)
    v_records = run_records(v_rows, fit, lam, (), window, last)
    out["remedies"][variant] = {}
    # A rule equal to another (in the base sweep or in this variant) is counted once here too.
    v_same = {**same, **identical_rules(v_rows)}
    for rule in ordered_rules(r["rule"] for r in v_records if r["rule"] not in v_same):
      all_runs = [r for r in v_records if r["rule"] == rule]
      runs = [r for r in all_runs if not r["diverged"]]
      base_runs = by_rule.get(rule, [])
      entry = {
        "runs": len(all_runs),
        "diverged": len(all_runs) - len(runs),
        "fit_ever": sum(r["matched"] is not None for r in runs),
        "never_fit": sorted(int(r["seed"]) for r in runs if r["matched"] is None),
      }
      for metric in METRICS:
        x, y = column(runs, metric, "matched"), column(base_runs, metric, "matched")
        entry[metric] = {**stats.describe(x), "vs_base": compare(x, y)}
      for where in POINTS.values():
        entry[where] = {}
        for metric in METRICS:
          x, y = column(runs, metric, where), column(base_runs, metric, where)
          entry[where][metric] = {**stats.describe(x), "values": x, "base_values": y}
      if out["matched_loss"]:
        entry["at_loss"] = _remedy_at_loss(runs, base_runs, out["matched_loss"]["target"], lam)
        entry["at_loss"]["base_values"] = {m: column(base_runs, m, "at_loss") for m in METRICS}
      out["remedies"][variant][rule] = entry
  return out


def build(workdir: str, claims: Mapping | None = None) -> dict:
  """Every number of the report: ``{task: {...}}`` (see the module docstring)."""
  out = {}
  for task, variants in find_sweeps(workdir).items():
    if base_variant(variants) is not None:
      out[task] = task_numbers(task, variants, claims)
  return out


def check_numbers(workdir: str, numbers: Mapping) -> None:
  """Refuses numbers that would make an empty report (a task without any run).

  Raises:
    ResultsFileError: no task, or a task whose base sweep has no run.
  """
  if not numbers:
    raise ResultsFileError(
      f"no results.csv in {workdir} (a sweep workdir) nor <task>/{BASE}/results.csv under it "
      "(a reproduction workdir)"
    )
  for task, t in numbers.items():
    if not t["rules"] or not any(e["runs"] for e in t["rules"].values()):
      raise ResultsFileError(f"the results of task {task} under {workdir} hold no run")
