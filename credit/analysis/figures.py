"""The figures of a sweep, one per file (PNG and PDF), from its ``results.csv``.

Per task:

* ``gap_acc_<task>``, ``gap_loss_<task>``: the final generalization gap per
  rule (one point per seed, mean +- s.e.m.);
* ``lambda_max_final_<task>``: the final top Hessian eigenvalue per rule;
* ``lambda_max_vs_gap_acc_<task>``, ``lambda_max_vs_gap_loss_<task>``: final
  lambda_max against the gap, pooled over rules, with Pearson and Spearman
  r and p (scipy.stats) in the title;
* ``lambda_max_training_<task>``: lambda_max along training, with the
  edge-of-stability line 2/eta;
* ``alignment_training_<task>``: the cosine between each rule's gradient and
  BPTT's along training;
* ``learning_curves_<task>``: train and (shifted) test score along training;
* ``lr_sweep_<task>``: final gap against the learning rate (when the sweep
  has more than one).

:func:`bound_plot` (λ_max against the predicted bound along training, one panel per
rule) and :func:`edge_plot` (the same per rule, one panel per task, with the
optimizer's threshold) are drawn by the report (:mod:`credit.reproduction.figures`).

A figure whose metrics are absent (no curvature probe, one learning rate) is
skipped with a note. Seeds that diverged (:mod:`credit.analysis.stats`) are
left out of every figure, and counted in each figure's heading. Figures are
built on ``matplotlib.figure.Figure`` without pyplot, so they work under any
backend (``experiments/figures.py`` uses Agg).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

from credit.analysis import stats

import matplotlib
import numpy as np
from absl import logging
from matplotlib.figure import Figure

RULE_ORDER = (
  "bptt",
  "tbptt",
  "rtrl",
  "three_factor_autodiff",
  "eprop",
  "eprop_random",
  "rflo",
  "mdgl",
  "mdgl_exact",
  "modprop",
  "snap",
  "snap2",
  "kf_rtrl",
  "r_kf_rtrl",
  "uoro",
  "kernl",
  "dni",
)
RULE_LABELS = {
  "bptt": "BPTT",
  "tbptt": "TBPTT",
  "rtrl": "RTRL",
  "three_factor_autodiff": "three-factor",
  "eprop": "e-prop",
  "eprop_random": "e-prop (random B)",
  "rflo": "RFLO",
  "mdgl": "MDGL",
  "mdgl_exact": "MDGL (exact W)",
  "modprop": "ModProp",
  "snap": "SnAp-n",
  "snap2": "SnAp-2",
  "kf_rtrl": "KF-RTRL",
  "r_kf_rtrl": "R-KF-RTRL",
  "uoro": "UORO",
  "kernl": "KeRNL",
  "dni": "DNI",
}
TASK_LABELS = {
  "seq_mnist": "sequential MNIST",
  "pattern_generation": "pattern generation",
  "delayed_match_to_sample": "delayed match-to-sample",
  "evidence_accumulation": "evidence accumulation",
}
STYLE = {
  "font.size": 11,
  "axes.titlesize": 11,
  "axes.labelsize": 11,
  "legend.fontsize": 9,
  "xtick.labelsize": 10,
  "ytick.labelsize": 10,
  "axes.spines.top": False,
  "axes.spines.right": False,
  "savefig.dpi": 150,
}
# tab10 for the first ten rules (their colours as before), then Dark2: every known rule distinct.
_PALETTE = matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["Dark2"].colors
_LR_STYLES = ("-", "--", ":", "-.")  # one line style per learning rate


class Report(NamedTuple):
  """What :func:`write_figures` did: files written, figures skipped, statistics shown."""

  written: list[str]
  skipped: list[str]
  stats: dict[str, stats.Correlation]


def rule_label(rule: str) -> str:
  return RULE_LABELS.get(rule, rule)


def task_label(task: str) -> str:
  return TASK_LABELS.get(task, task.replace("_", " "))


def rule_color(rule: str):
  if rule == "bptt":
    return "black"
  known = [r for r in RULE_ORDER if r != "bptt"]
  i = known.index(rule) if rule in known else len(known) + sum(map(ord, rule))
  return _PALETTE[i % len(_PALETTE)]


def rule_key(rule: str):
  return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), rule)


def _lr_text(lr: float) -> str:
  return f"η = {lr:g}"


class Score(NamedTuple):
  """How a task's score and loss read in labels."""

  name: str  # "accuracy" or "R²"
  percent: bool  # plot score gaps in percentage points
  loss: str  # "cross-entropy (nats)" or "MSE"


def score_of(objective: str | None) -> Score:
  if objective == "mse":
    return Score("R²", False, "MSE")
  if objective == "xent":
    return Score("accuracy", True, "cross-entropy (nats)")
  return Score("score", False, "loss")


def _groups(finals: Sequence[Mapping]) -> list[tuple[str, float, list[Mapping]]]:
  """``(rule, lr, records)`` in rule order, then learning rate."""
  grouped = stats.group_rows(finals, ("rule", "learning_rate"))
  keys = sorted(grouped, key=lambda k: (rule_key(k[0]), k[1]))
  return [(rule, lr, grouped[(rule, lr)]) for rule, lr in keys]


def has_metric(rows: Sequence[Mapping], metric: str) -> bool:
  return any(math.isfinite(stats.as_float(r.get(metric))) for r in rows)


def _values(records: Sequence[Mapping], metric: str) -> np.ndarray:
  return np.asarray([stats.as_float(r[metric]) for r in records if not r["diverged"]], float)


def _scale(metric: str, score: Score) -> tuple[float, str]:
  """Factor and (two-line) label for a metric's axis."""
  if metric == "gap_acc":
    unit = " (% points)" if score.percent else ""
    return (100.0 if score.percent else 1.0), f"generalization gap{unit}\ntrain − test {score.name}"
  if metric == "gap_loss":
    loss, _, unit = score.loss.partition(" (")
    unit = f" ({unit}" if unit else ""
    return 1.0, f"generalization gap{unit}\ntest − train {loss}"
  if metric == "lambda_max":
    return 1.0, "λ_max of the W_rec Hessian"
  return 1.0, metric


def _legend(ax) -> None:
  """A legend inside the axes when short, to their right when long."""
  n = len(ax.get_legend_handles_labels()[0])
  if n > 4:
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
  else:
    ax.legend(frameon=False)


def new_figure(width: float = 6.4, height: float = 4.4) -> Figure:
  return Figure(figsize=(width, height), layout="constrained")


# ------------------------------------------------------------------- figures


def draw_strip(ax, finals: Sequence[Mapping], metric: str, score: Score) -> list[tuple]:
  """Final ``metric`` per rule (and learning rate) on ``ax``: a point per seed, mean +- s.e.m.

  Returns:
    The ``(rule, learning rate, records)`` groups, in the order of the x axis.
  """
  groups = _groups(finals)
  several_lrs = len({lr for _, lr, _ in groups}) > 1
  factor, ylabel = _scale(metric, score)
  rng = np.random.default_rng(0)
  ticks = []
  for x, (rule, lr, records) in enumerate(groups):
    v = _values(records, metric) * factor
    v = v[np.isfinite(v)]
    color = rule_color(rule)
    if v.size:
      ax.scatter(
        x + rng.uniform(-0.12, 0.12, v.size),
        v,
        s=22,
        color=color,
        alpha=0.6,
        edgecolor="none",
        zorder=2,
      )
      mean, _, sem, _ = stats.mean_std_sem(list(v))
      ax.errorbar(
        x + 0.28,
        mean,
        yerr=0 if math.isnan(sem) else sem,
        fmt="o",
        color=color,
        ms=6,
        capsize=4,
        lw=1.6,
        zorder=3,
      )
    n_div = sum(bool(r["diverged"]) for r in records)
    label = rule_label(rule) + (f"\n{_lr_text(lr)}" if several_lrs else "")
    ticks.append(label + (f"\n({n_div} diverged)" if n_div else ""))
  ax.set_xticks(range(len(groups)), ticks)
  ax.set_xlim(-0.6, len(groups) - 0.3)
  if metric.startswith("gap"):
    ax.axhline(0, color="0.6", lw=0.8, zorder=1)
  ax.set_ylabel(ylabel)
  return groups


def strip_plot(finals: Sequence[Mapping], metric: str, task: str, score: Score) -> Figure:
  """Final ``metric`` per rule (and learning rate): a point per seed, mean +- s.e.m."""
  groups = _groups(finals)
  fig = new_figure(max(4.8, 1.3 * len(groups) + 2.0))
  ax = fig.add_subplot()
  draw_strip(ax, finals, metric, score)
  several_lrs = len({lr for _, lr, _ in groups}) > 1
  what = "final " + ("generalization gap" if metric.startswith("gap") else "λ_max")
  lrs = "" if several_lrs else f", {_lr_text(groups[0][1])}"
  ax.set_title(f"{task_label(task)}: {what} per rule\n(points: seeds; bars: mean ± s.e.m.{lrs})")
  return fig


def scatter_plot(
  finals: Sequence[Mapping], gap: str, task: str, score: Score
) -> tuple[Figure, stats.Correlation]:
  """Final lambda_max against the gap, pooled over rules, with Pearson and Spearman r."""
  kept = [r for r in finals if not r["diverged"]]
  x = np.asarray([stats.as_float(r["lambda_max"]) for r in kept])
  factor, ylabel = _scale(gap, score)
  y = np.asarray([stats.as_float(r[gap]) for r in kept]) * factor
  corr = stats.correlation(x, y)
  fig = new_figure()
  ax = fig.add_subplot()
  lrs = sorted({r["learning_rate"] for r in kept})
  markers = "os^Dv<>p"
  for rule, lr, _ in _groups(kept):
    sel = np.asarray([r["rule"] == rule and r["learning_rate"] == lr for r in kept])
    label = rule_label(rule) + (f", {_lr_text(lr)}" if len(lrs) > 1 else "")
    ax.scatter(
      x[sel],
      y[sel],
      s=36,
      color=rule_color(rule),
      marker=markers[lrs.index(lr) % 8],
      alpha=0.8,
      edgecolor="white",
      linewidth=0.5,
      label=label,
    )
  ok = np.isfinite(x) & np.isfinite(y)
  if corr.n >= 3 and math.isfinite(corr.pearson_r):
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    grid = np.linspace(x[ok].min(), x[ok].max(), 50)
    ax.plot(grid, slope * grid + intercept, ls="--", color="0.4", lw=1, label="least squares")
  ax.set_xlabel("final λ_max of the W_rec Hessian")
  ax.set_ylabel(ylabel)
  ax.legend(frameon=False)
  ax.set_title(
    f"{task_label(task)}: curvature vs generalization (n = {corr.n} runs, pooled over rules)\n"
    f"Pearson r = {corr.pearson_r:.2f} (p = {corr.pearson_p:.2g}), "
    f"Spearman ρ = {corr.spearman_r:.2f} (p = {corr.spearman_p:.2g})"
  )
  return fig, corr


def _curves(rows: Sequence[Mapping], metric: str):
  """``(rule, lr, steps, values [seeds, steps])`` of non-diverged seeds, NaN steps dropped."""
  finals = stats.final_records(rows)
  diverged = {(r["rule"], r["learning_rate"], r["seed"]) for r in finals if r["diverged"]}
  out = []
  for rule, lr, group in _groups(rows):
    by_seed = stats.group_rows(
      [r for r in group if (rule, lr, r["seed"]) not in diverged], ("seed",)
    )
    if not by_seed:
      continue
    steps = sorted({r["step"] for r in group})
    table = np.full((len(by_seed), len(steps)), np.nan)
    for i, seed_rows in enumerate(by_seed.values()):
      for r in seed_rows:
        table[i, steps.index(r["step"])] = stats.as_float(r.get(metric))
    measured = np.isfinite(table).any(axis=0)
    if measured.any():
      out.append((rule, lr, np.asarray(steps)[measured], table[:, measured]))
  return out


def _mean_band(ax, steps, table, color, label, factor=1.0, ls="-"):
  table = table * factor
  for seed_curve in table:
    ax.plot(steps, seed_curve, color=color, lw=0.6, alpha=0.3, ls=ls)
  n = np.sum(np.isfinite(table), axis=0)
  mean = np.nanmean(table, axis=0)
  sem = np.nanstd(table, axis=0, ddof=1) / np.sqrt(n) if table.shape[0] > 1 else None
  ax.plot(steps, mean, color=color, lw=2, label=label, ls=ls)
  if sem is not None:
    ax.fill_between(steps, mean - sem, mean + sem, color=color, alpha=0.2, lw=0)


def draw_lambda_training(ax, rows: Sequence[Mapping], log_scale: bool | None = None) -> None:
  """lambda_max along training per rule on ``ax``, with the 2/eta line of each learning rate.

  ``log_scale``: a logarithmic y axis; default (None): when every value is positive and
  2/eta is more than 5x the largest one.
  """
  curves = _curves(rows, "lambda_max")
  if not curves:  # every seed diverged
    ax.text(0.5, 0.5, "no seed left (all diverged)", ha="center", transform=ax.transAxes)
    return
  several_lrs = len({lr for _, lr, _, _ in curves}) > 1
  lrs = sorted({lr for _, lr, _, _ in curves})
  for rule, lr, steps, table in curves:
    label = rule_label(rule) + (f", {_lr_text(lr)}" if several_lrs else "")
    _mean_band(ax, steps, table, rule_color(rule), label, ls=_LR_STYLES[lrs.index(lr) % 4])
  top = max(np.nanmax(t) for _, _, _, t in curves)
  for lr in lrs:
    ax.axhline(2 / lr, color="0.35", lw=1.2, ls=_LR_STYLES[lrs.index(lr) % 4])
    ax.annotate(
      f"2/η = {2 / lr:.4g}" + (f" (η = {lr:g})" if several_lrs else "") + ": edge of stability",
      (1.0, 2 / lr),
      xycoords=("axes fraction", "data"),
      ha="right",
      va="bottom",
      fontsize=9,
      color="0.25",
    )
  positive = all(np.nanmin(t) > 0 for _, _, _, t in curves)
  if log_scale is None:
    log_scale = positive and max(2 / lr for lr in lrs) / top > 5
  if log_scale and positive:
    ax.set_yscale("log")  # keeps the 2/eta line and the curves both readable
  else:
    ax.set_ylim(min(0.0, min(np.nanmin(t) for _, _, _, t in curves)), ax.get_ylim()[1])
  ax.set_xlabel("training step")
  ax.set_ylabel("λ_max of the W_rec Hessian")
  _legend(ax)


def lambda_training_plot(rows: Sequence[Mapping], task: str) -> Figure:
  """lambda_max along training per rule, with the 2/eta line of each learning rate."""
  fig = new_figure(7.0, 4.6)
  ax = fig.add_subplot()
  draw_lambda_training(ax, rows)
  ax.set_title(f"{task_label(task)}: sharpness along training\n(thin: seeds; thick: mean ± s.e.m.)")
  return fig


def bound_plot(
  rows: Sequence[Mapping],
  task: str,
  threshold: tuple[str, float] | None = None,
  skip_rules: Sequence[str] = (),
) -> Figure | None:
  r"""λ_max against the predicted bound along training, one panel per rule.

  Each panel: the rule's λ_max (``lambda_max``, else the theory probe's
  ``theory_lambda_max``) per seed and its median, the rule's own predicted bound
  :math:`2/(\eta c)` (theory probe, median over seeds; dashed) and the
  optimizer's threshold (``threshold = (label, value)``: :math:`2/\eta` for SGD,
  Adam's :math:`(2 + 2\beta_1)/((1 - \beta_1)\eta)`, which bounds the
  preconditioned sharpness, not this λ_max; dotted).

  Returns:
    The figure, or None when no rule has λ_max measured.
  """
  metric = next(
    (m for m in ("lambda_max", "theory_lambda_max") if has_metric(rows, m)),
    None,
  )
  if metric is None:
    return None
  curves = [c for c in _curves(rows, metric) if c[0] not in skip_rules]
  bounds = {(r, lr): (st, t) for r, lr, st, t in _curves(rows, "predicted_lambda_bound")}
  if not curves:
    return None
  fig = new_figure(3.2 * len(curves), 3.6)
  axes = np.atleast_1d(fig.subplots(1, len(curves), sharey=True))
  for ax, (rule, lr, steps, table) in zip(axes, curves, strict=True):
    color = rule_color(rule)
    for seed_curve in table:
      ax.plot(steps, seed_curve, color=color, lw=0.6, alpha=0.35)
    ax.plot(steps, np.nanmedian(table, axis=0), color=color, lw=2, label="λ_max (median)")
    if (rule, lr) in bounds:
      b_steps, b_table = bounds[(rule, lr)]
      with np.errstate(invalid="ignore"):
        ax.plot(b_steps, np.nanmedian(b_table, axis=0), color=color, ls="--", label="2/(ηc)")
    if threshold is not None and math.isfinite(threshold[1]):
      ax.axhline(threshold[1], color="0.35", ls=":", label=threshold[0])
    ax.set_yscale("log")
    ax.set_title(rule_label(rule))
    ax.set_xlabel("training step")
  axes[0].set_ylabel(metric)
  _legend(axes[0])
  drawn = [
    r for r, lr, _, _ in curves if (r, lr) in bounds and np.isfinite(bounds[(r, lr)][1]).any()
  ]
  # The title promises only what was measured: without the theory probe there is no bound.
  what = (
    "λ_max and the predicted bound 2/(ηc) along training"
    if drawn
    else "λ_max along training (the predicted bound 2/(ηc) was not measured: theory probe off)"
  )
  fig.suptitle(f"{task_label(task)}: {what}")
  return fig


def _median_iqr(ax, steps, table, color, label, ls="-", band=True) -> None:
  """Median over seeds, and their interquartile range as a band (NaN: not measured)."""
  with np.errstate(invalid="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # a step measured in no seed
    q1, med, q3 = np.nanpercentile(table, [25, 50, 75], axis=0)
  ax.plot(steps, med, color=color, lw=1.8, ls=ls, label=label)
  if band:
    ax.fill_between(steps, q1, q3, color=color, alpha=0.18, lw=0)


class EdgePanel(NamedTuple):
  """One task of :func:`edge_plot`.

  Attributes:
    rows: the task's rows (base sweep).
    threshold: the optimizer's edge (:func:`credit.analysis.edge_of_stability.optimizer_threshold`
      at the sweep's learning rate), or an empty dict.
    skip_rules: rules left out (duplicates of another rule).
  """

  rows: Sequence[Mapping]
  threshold: Mapping
  skip_rules: Sequence[str] = ()


def edge_plot(panels: Mapping[str, EdgePanel]) -> Figure | None:
  r"""λ_max along training per rule, against the edges that apply: one panel per task.

  Each panel, per rule (seeds that did not diverge; median, and the interquartile
  range as a band): λ_max of H (``lambda_max``, else ``theory_lambda_max``; solid);
  under SGD the rule's own bound :math:`2/(\eta c)` (``predicted_lambda_bound``;
  dashed, no band); under Adam the preconditioned sharpness ``lambda_max_precond``
  where measured (dotted). The optimizer's threshold is a grey line (SGD
  :math:`2/\eta`, momentum :math:`(2+2\beta)/\eta`, Adam
  :math:`(2+2\beta_1)/((1-\beta_1)\eta)`, which bounds the preconditioned sharpness,
  not λ_max of H). Log y.

  Returns:
    The figure, or None when no task has λ_max measured.
  """
  drawable = {}
  for task, panel in panels.items():
    metric = next(
      (m for m in ("lambda_max", "theory_lambda_max") if has_metric(panel.rows, m)), None
    )
    if metric is not None:
      drawable[task] = (metric, panel)
  if not drawable:
    return None
  ncols = min(2, len(drawable))
  nrows = -(-len(drawable) // ncols)
  fig = new_figure(4.8 * ncols + 2.2, 3.6 * nrows + 0.4)
  grid = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
  for ax in grid[len(drawable) :]:
    ax.set_visible(False)
  axes = grid[: len(drawable)]
  for ax, (task, (metric, panel)) in zip(axes, drawable.items(), strict=True):
    th = panel.threshold or {}
    curves = [c for c in _curves(panel.rows, metric) if c[0] not in panel.skip_rules]
    several = len({lr for _, lr, _, _ in curves}) > 1
    extras = []
    if th.get("optimizer") == "sgd":
      extras.append(("predicted_lambda_bound", "--", "2/(ηc)"))
    precond = "lambda_max_precond"  # the column of a P⁻¹H threshold
    if th.get("applies_to") not in (None, "H") and has_metric(panel.rows, precond):
      extras.append((precond, ":", "λ_max(P⁻¹H)"))
    for rule, lr, steps, table in curves:
      color = rule_color(rule)
      label = rule_label(rule) + (f", {_lr_text(lr)}" if several else "")
      _median_iqr(ax, steps, table, color, label)
      for name, ls, what in extras:
        for r2, lr2, st2, t2 in _curves(panel.rows, name):
          if (r2, lr2) == (rule, lr):
            _median_iqr(ax, st2, t2, color, f"{label}: {what}", ls=ls, band=ls == ":")
    if th.get("formula") and math.isfinite(th.get("value", math.nan)):
      ax.axhline(th["value"], color="0.35", lw=1.2)
      ax.annotate(
        f"{th['formula']} = {th['value']:.4g} (on {th['applies_to']})",
        (1.0, th["value"]),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=8,
        color="0.25",
      )
    if any(np.nanmax(t) > 0 for _, _, _, t in curves if np.isfinite(t).any()):
      ax.set_yscale("log")
    ax.set_title(task_label(task))
    ax.set_xlabel("training step")
  for ax in grid[::ncols]:
    ax.set_ylabel("sharpness")
  handles, labels = axes[0].get_legend_handles_labels()
  seen = dict(zip(labels, handles, strict=True))
  for ax in axes[1:]:
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
      seen.setdefault(lab, h)
  fig.legend(
    list(seen.values()),
    list(seen),
    frameon=False,
    loc="outside right center",
    fontsize=8,
  )
  bound = any(
    (panel.threshold or {}).get("optimizer") == "sgd"
    and has_metric(panel.rows, "predicted_lambda_bound")
    for _, panel in drawable.values()
  )
  edges = (
    "the rule's own bound 2/(ηc) (SGD, dashed) and the optimizer's edge (grey)"
    if bound
    else "and the optimizer's edge (grey; the rules' own bounds 2/(ηc) were not measured)"
  )
  fig.suptitle(f"λ_max along training (median and IQR over seeds that did not diverge),\n{edges}")
  return fig


def alignment_plot(rows: Sequence[Mapping], task: str) -> Figure:
  """Cosine between the rule's gradient and BPTT's along training."""
  curves = [c for c in _curves(rows, "align_cos") if c[0] != "bptt"]
  several_lrs = len({lr for _, lr, _, _ in curves}) > 1
  fig = new_figure(7.0, 4.4)
  ax = fig.add_subplot()
  ax.axhline(1, color="black", lw=1, ls="--", label="BPTT (exact gradient)")
  ax.axhline(0, color="0.6", lw=0.8)
  lrs = sorted({lr for _, lr, _, _ in curves})
  for rule, lr, steps, table in curves:
    label = rule_label(rule) + (f", {_lr_text(lr)}" if several_lrs else "")
    _mean_band(ax, steps, table, rule_color(rule), label, ls=_LR_STYLES[lrs.index(lr) % 4])
  ax.set_xlabel("training step")
  ax.set_ylabel("cos(rule gradient, BPTT gradient)")
  ax.set_title(
    f"{task_label(task)}: gradient alignment with BPTT\n(thin: seeds; thick: mean ± s.e.m.)"
  )
  _legend(ax)
  return fig


def learning_curves_plot(rows: Sequence[Mapping], task: str, score: Score) -> Figure:
  """Train (solid) and shifted-test (dashed) score along training, mean over seeds.

  ``rows`` should hold one learning rate (:func:`make_figures` draws one
  figure per learning rate).
  """
  factor = 100.0 if score.percent else 1.0
  unit = " (%)" if score.percent else ""
  fig = new_figure(7.0, 4.4)
  ax = fig.add_subplot()
  test = {(r, lr): (s, t) for r, lr, s, t in _curves(rows, "test_acc")}
  lrs = sorted({r["learning_rate"] for r in rows})
  for rule, lr, steps, table in _curves(rows, "train_acc"):
    color = rule_color(rule)
    ax.plot(steps, np.nanmean(table, axis=0) * factor, color=color, lw=2, label=rule_label(rule))
    if (rule, lr) in test:
      s, t = test[(rule, lr)]
      ax.plot(s, np.nanmean(t, axis=0) * factor, color=color, lw=2, ls="--")
  ax.plot([], [], color="0.3", lw=2, label="train")
  ax.plot([], [], color="0.3", lw=2, ls="--", label="test (shifted)")
  ax.set_xlabel("training step")
  ax.set_ylabel(f"{score.name}{unit}")
  if score.name == "R²" and ax.get_ylim()[0] < -1:
    # Early R^2 can be hugely negative; the interesting range is near 1.
    ax.set_ylim(-1, 1.05)
    ax.set_ylabel("R² (clipped below at −1)")
  lr_text = ", ".join(_lr_text(lr) for lr in lrs)
  ax.set_title(f"{task_label(task)}: learning curves ({lr_text}; mean over seeds)")
  _legend(ax)
  return fig


def lr_sweep_plot(finals: Sequence[Mapping], task: str, score: Score) -> Figure:
  """Final gap against the learning rate, per rule (mean +- s.e.m. over seeds)."""
  factor, ylabel = _scale("gap_acc", score)
  fig = new_figure()
  ax = fig.add_subplot()
  by_rule = stats.group_rows(finals, ("rule",))
  for (rule,) in sorted(by_rule, key=lambda k: rule_key(k[0])):
    points = []
    for (lr,), records in sorted(stats.group_rows(by_rule[(rule,)], ("learning_rate",)).items()):
      mean, _, sem, n = stats.mean_std_sem(list(_values(records, "gap_acc") * factor))
      if n:
        points.append((lr, mean, 0 if math.isnan(sem) else sem))
    if points:
      lr, mean, sem = map(np.asarray, zip(*points, strict=True))
      ax.errorbar(
        lr, mean, yerr=sem, color=rule_color(rule), marker="o", capsize=3, label=rule_label(rule)
      )
  ax.set_xscale("log")
  lrs = sorted({r["learning_rate"] for r in finals})
  ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
  ax.minorticks_off()
  ax.axhline(0, color="0.6", lw=0.8)
  ax.set_xlabel("learning rate η")
  ax.set_ylabel(ylabel)
  ax.set_title(f"{task_label(task)}: final gap vs learning rate (mean ± s.e.m.)")
  ax.legend(frameon=False)
  return fig


# -------------------------------------------------------------------- driver


def objectives(workdir: str) -> dict[str, str]:
  """``{task: objective}`` from the cells' ``run_info.json`` (``xent`` or ``mse``)."""
  out = {}
  cells = os.path.join(workdir, "cells")
  for name in sorted(os.listdir(cells)) if os.path.isdir(cells) else []:
    path = os.path.join(cells, name, "run_info.json")
    if os.path.exists(path):
      with open(path) as f:
        info = json.load(f)
      if info.get("task") and info.get("objective"):
        out[info["task"]] = info["objective"]
  return out


def make_figures(
  rows: Sequence[Mapping], objective_of: Mapping[str, str] | None = None
) -> tuple[dict[str, Figure], list[str], dict[str, stats.Correlation]]:
  """Builds every figure the rows allow.

  Args:
    rows: tidy metric rows (``results.csv``).
    objective_of: ``{task: "xent" | "mse"}``, for axis labels.

  Returns:
    ``(figures by file stem, notes on skipped figures, correlations by stem)``.
  """
  objective_of = objective_of or {}
  figures: dict[str, Figure] = {}
  notes: list[str] = []
  correlations: dict[str, stats.Correlation] = {}
  drawn: set[str] = set()
  with matplotlib.rc_context(STYLE):
    for (task,), task_rows in stats.group_rows(rows, ("task",)).items():
      score = score_of(objective_of.get(task))
      finals = stats.final_records(task_rows)

      def add(stem: str, needs: Sequence[str], build: Callable[[], Figure | None]) -> None:
        missing = [m for m in needs if not has_metric(task_rows, m)]  # noqa: B023 - called at once
        if missing:
          notes.append(f"{stem}: skipped, no {', '.join(missing)} in the results")
          return
        figures[stem] = build()

      for metric, stem in (
        ("gap_acc", "gap_acc"),
        ("gap_loss", "gap_loss"),
        ("lambda_max", "lambda_max_final"),
      ):
        add(f"{stem}_{task}", [metric], partial(strip_plot, finals, metric, task, score))
      for gap in ("gap_acc", "gap_loss"):
        stem = f"lambda_max_vs_{gap}_{task}"

        def build(gap=gap, stem=stem, finals=finals, task=task, score=score):
          fig, corr = scatter_plot(finals, gap, task, score)
          correlations[stem] = corr
          return fig

        add(stem, ["lambda_max", gap], build)
      add(
        f"lambda_max_training_{task}",
        ["lambda_max"],
        partial(lambda_training_plot, task_rows, task),
      )
      has_alignment = any(
        math.isfinite(stats.as_float(r.get("align_cos"))) for r in task_rows if r["rule"] != "bptt"
      )
      if has_alignment:
        figures[f"alignment_training_{task}"] = alignment_plot(task_rows, task)
      else:
        notes.append(f"alignment_training_{task}: skipped, no align_cos in the results")
      lrs = sorted({r["learning_rate"] for r in finals})
      for lr in lrs:
        lr_rows = [r for r in task_rows if r["learning_rate"] == lr]
        stem = f"learning_curves_{task}" + (f"_lr{lr:g}" if len(lrs) > 1 else "")
        add(
          stem,
          ["train_acc", "test_acc"],
          partial(learning_curves_plot, lr_rows, task, score),
        )
      if len(lrs) > 1:
        figures[f"lr_sweep_{task}"] = lr_sweep_plot(finals, task, score)
      else:
        notes.append(f"lr_sweep_{task}: skipped, the sweep has one learning rate")
      n_div = sum(bool(r["diverged"]) for r in finals)
      if n_div:  # every figure of the task says how many runs it leaves out
        for stem in set(figures) - drawn:
          figures[stem].suptitle(
            f"{n_div} of {len(finals)} runs diverged and are left out", fontsize=9, color="0.3"
          )
      drawn = set(figures)
  return figures, notes, correlations


def write_figures(
  workdir: str, out_dir: str | None = None, formats: Sequence[str] = ("png", "pdf")
) -> Report:
  """Writes every figure of the sweep in ``workdir`` to ``out_dir`` (``<workdir>/figures``).

  Also writes ``figure_stats.json`` with the correlations shown in titles.

  Raises:
    ResultsFileError: ``results.csv`` is missing, empty or malformed, or allows
      no figure (nothing is written then).
  """
  from credit.errors import ResultsFileError
  from credit.training import outputs

  path = os.path.join(workdir, "results.csv")
  rows = outputs.read_results(path)  # refuses a missing, empty or malformed file
  figures, notes, correlations = make_figures(rows, objectives(workdir))
  if not figures:
    raise ResultsFileError(f"{path} allows no figure: {'; '.join(notes)}")
  out_dir = out_dir or os.path.join(workdir, "figures")
  os.makedirs(out_dir, exist_ok=True)
  written = []
  with matplotlib.rc_context(STYLE):
    for stem, fig in figures.items():
      for fmt in formats:
        path = os.path.join(out_dir, f"{stem}.{fmt}")
        fig.savefig(path)
        written.append(path)
  for note in notes:
    logging.info("figure %s", note)
  outputs.write_json(
    os.path.join(out_dir, "figure_stats.json"),
    {stem: c._asdict() for stem, c in correlations.items()},
  )
  return Report(written=written, skipped=notes, stats=correlations)
