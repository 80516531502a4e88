r"""The field map: every rule on the plane of alignment with BPTT against λ_max, per task.

Does following a worse approximation of the gradient lead to sharper minima, across the
whole field of online rules (issue 16)? Each rule is one point per task:

* **x**: its mean alignment with BPTT. Per run, :math:`\bar a = \frac1K \sum_{k \le K}
  \cos(g^{rule}_k, g^{BPTT}_k)` over the evaluations up to the one the point is read at
  (``align_cos``); the point is the mean of :math:`\bar a` over runs. BPTT is at 1 (its
  cosine with itself, not measured);
* **y** (log): λ_max of the W_rec Hessian there (``lambda_max``, else the theory probe's
  ``theory_lambda_max``), mean over runs;
* **colour**: the generalization gap there (``gap_acc``), mean over runs.

Each point also carries the training score there (``train_acc``, mean over runs), for the
report's table of the points.

Which evaluation: **matched fit** (each run's first evaluation meeting the task's fit
criterion; only the runs that meet it) where at least one run of the rule meets it, else
**the end** of training (every run); the point says which (filled circle: matched; open
square: end). Diverged runs are left out. Error bars: 95% percentile-bootstrap intervals
of the means over runs (a single run: none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from credit.analysis import figures as figures_lib
from credit.analysis import fit as fit_lib
from credit.analysis import stats

import matplotlib
import numpy as np
from matplotlib.figure import Figure

REFERENCE_RULE = "bptt"
ALIGNMENT = "align_cos"
GAP = "gap_acc"
TRAIN = "train_acc"
LAMBDA_METRICS = ("lambda_max", "theory_lambda_max")
MATCHED, END = "matched", "end"


def bootstrap_mean_ci(
  values: Sequence[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
  """Percentile-bootstrap interval of the mean of the finite ``values`` (NaN when < 2)."""
  x = stats.finite(values)
  if x.size < 2:
    return math.nan, math.nan
  rng = np.random.default_rng(seed)
  means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
  low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return float(low), float(high)


def _lambda_metric(rows: Sequence[Mapping]) -> str | None:
  for name in LAMBDA_METRICS:
    if figures_lib.has_metric(rows, name):
      return name
  return None


def _mean_alignment(healthy: Sequence[Mapping], step: float) -> float:
  """Mean of the measured ``align_cos`` over the run's evaluations up to ``step``."""
  values = [stats.as_float(r.get(ALIGNMENT)) for r in healthy if r["step"] <= step]
  values = [v for v in values if math.isfinite(v)]
  return float(np.mean(values)) if values else math.nan


def run_point(
  rows: Sequence[Mapping], fit: fit_lib.FitCriterion | None, lam: str, where: str
) -> dict | None:
  """One run's alignment, λ_max and gap at its first fit (``where="matched"``) or its end.

  Args:
    rows: the run's evaluations (one task, rule, learning rate and seed).
    fit: the task's fit criterion (``where="matched"`` needs one).
    lam: the λ_max column (``lambda_max`` or ``theory_lambda_max``).
    where: ``"matched"`` or ``"end"``.

  Returns:
    ``{"align", "lambda", "gap", "train", "step"}``, or None when the run diverged or
    (matched) never fits.
  """
  healthy = fit_lib.healthy_rows(rows)
  if len(healthy) < len(rows) or not healthy:
    return None  # diverged: left out
  names = [lam, GAP, TRAIN]
  if where == MATCHED:
    at = fit_lib.first_fit(healthy, fit, names) if fit is not None else None
    if at is None:
      return None
  else:
    at = {"step": float(healthy[-1]["step"]), **fit_lib.values_at(healthy, len(healthy) - 1, names)}
  is_reference = healthy[0]["rule"] == REFERENCE_RULE
  return {
    "align": 1.0 if is_reference else _mean_alignment(healthy, at["step"]),
    "lambda": at[lam],
    "gap": at[GAP],
    "train": at[TRAIN],
    "step": at["step"],
  }


def field_points(rows: Sequence[Mapping], fit: fit_lib.FitCriterion | None) -> dict[str, dict]:
  """Each rule's point on the field map of one task (module docstring).

  Args:
    rows: the task's result rows (one sweep's ``results.csv``, one task).
    fit: the task's fit criterion (None: every rule at the end).

  Returns:
    ``{rule: {"where", "n", "diverged", "align", "align_ci", "lambda", "lambda_ci",
    "gap", "gap_ci", "train", "train_ci", "steps"}}`` in the report's rule order; a rule
    without a kept run is left out.
  """
  lam = _lambda_metric(rows)
  if lam is None:
    return {}
  runs = stats.group_rows(rows, stats.RUN_COLUMNS)
  by_rule: dict[str, list[list[Mapping]]] = {}
  for key, run in runs.items():
    by_rule.setdefault(key[stats.RUN_COLUMNS.index("rule")], []).append(run)
  out: dict[str, dict] = {}
  for rule in sorted(by_rule, key=figures_lib.rule_key):
    matched = [run_point(r, fit, lam, MATCHED) for r in by_rule[rule]]
    matched = [p for p in matched if p is not None]
    where = MATCHED if matched else END
    points = matched or [p for r in by_rule[rule] if (p := run_point(r, fit, lam, END))]
    if not points:
      continue
    entry: dict = {
      "where": where,
      "n": len(points),
      "diverged": sum(len(fit_lib.healthy_rows(r)) < len(r) for r in by_rule[rule]),
      "steps": [p["step"] for p in points],
    }
    for name in ("align", "lambda", "gap", "train"):
      values = [p[name] for p in points]
      entry[name] = stats.describe(values)["mean"]
      entry[f"{name}_ci"] = bootstrap_mean_ci(values)
    out[rule] = entry
  return out


def _err(entry: Mapping, name: str) -> list[list[float]]:
  low, high = entry[f"{name}_ci"]
  mean = entry[name]
  if not (math.isfinite(low) and math.isfinite(high)):
    return [[0.0], [0.0]]
  return [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]


def draw_panel(ax, points: Mapping[str, Mapping], task: str, fig: Figure) -> None:
  """One task's field map on ``ax`` (a colour bar for the gap on ``fig``)."""
  shown = {
    r: p for r, p in points.items() if math.isfinite(p["align"]) and p["lambda"] > 0
  }  # log axis: a non-positive λ_max cannot be placed
  gaps = [p["gap"] for p in shown.values() if math.isfinite(p["gap"])]
  norm = matplotlib.colors.Normalize(min(gaps, default=0.0), max(gaps, default=1.0))
  if norm.vmin == norm.vmax:
    norm = matplotlib.colors.Normalize(norm.vmin - 1e-3, norm.vmax + 1e-3)
  cmap = matplotlib.colormaps["viridis"]
  for rule, p in shown.items():
    color = cmap(norm(p["gap"])) if math.isfinite(p["gap"]) else "0.6"
    matched = p["where"] == MATCHED
    ax.errorbar(
      p["align"],
      p["lambda"],
      xerr=_err(p, "align"),
      yerr=_err(p, "lambda"),
      fmt="o" if matched else "s",
      ms=8,
      mfc=color if matched else "white",
      mec=color,
      mew=1.6,
      ecolor="0.55",
      elinewidth=1,
      capsize=3,
      zorder=3,
    )
    ax.annotate(
      figures_lib.rule_label(rule),
      (p["align"], p["lambda"]),
      xytext=(5, 4),
      textcoords="offset points",
      fontsize=8,
    )
  ax.set_yscale("log")
  ax.set_xlabel("mean cos(rule gradient, BPTT gradient)")
  ax.set_ylabel("λ_max of the W_rec Hessian")
  ax.set_title(figures_lib.task_label(task))
  bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, pad=0.01)
  bar.set_label("generalization gap (train − test score)")


def field_map_plot(
  task_rows: Mapping[str, Sequence[Mapping]],
  fits: Mapping[str, fit_lib.FitCriterion | None],
) -> tuple[Figure | None, dict[str, dict[str, dict]]]:
  """The field map, one panel per task: every rule's alignment against λ_max, coloured by gap.

  Args:
    task_rows: ``{task: result rows}`` (each task's base sweep).
    fits: ``{task: fit criterion}`` (a task not listed: every rule at the end).

  Returns:
    ``(figure, {task: {rule: point}})`` (points as :func:`field_points`); the figure is
    None when no task has both alignment and λ_max measured.
  """
  points = {task: field_points(rows, fits.get(task)) for task, rows in task_rows.items()}
  points = {
    task: p
    for task, p in points.items()
    if any(r != REFERENCE_RULE and math.isfinite(e["align"]) for r, e in p.items())
  }
  if not points:
    return None, {}
  with matplotlib.rc_context(figures_lib.STYLE):
    cols = 2 if len(points) == 4 else min(len(points), 3)
    rows = math.ceil(len(points) / cols)
    fig = Figure(figsize=(5.6 * cols, 4.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (task, p) in zip(axes, points.items(), strict=False):
      draw_panel(ax, p, task, fig)
    for ax in axes[len(points) :]:
      ax.set_visible(False)
    fig.suptitle(
      "the field: alignment with BPTT against λ_max\n(filled: at matched fit; open: at the end;"
      " bars: bootstrap 95% CIs over runs)",
      fontsize=10,
    )
  return fig, points
