"""Statistics over tidy metric rows: final values per seed, per-cell summaries, contrasts.

Rows are dicts as in ``results.csv`` (one per task, rule, learning rate, seed
and evaluation step). Besides the per-seed records, the module holds the
two-sample statistics of the reports (pure functions on float64 arrays, NaNs
dropped): difference of means with a percentile-bootstrap CI, Cohen's d,
Cliff's delta, the Mann-Whitney p-value, Holm's step-down correction, the
variance ratio with the Brown-Forsythe test, and a rank partial correlation
that removes a grouping factor (the rule) before correlating.

**Divergence.** A seed is *diverged* from the first evaluation whose
``diverged`` flag is set (its training loss turned non-finite or exceeded
``max_loss``) or at which any evaluation metric (a loss or score of an
evaluation set, or a gap: the names :func:`checked_for_divergence` accepts) is
NaN or infinite. Diverged seeds are left out of every mean, statistic and
correlation and counted apart.

**Final values.** All evaluation metrics of a seed's final record come from
one evaluation: the last one (a seed that never diverged) or the last one
before its divergence. A probe measured less often than evaluations
(``curvature.every`` a multiple of ``eval_every``; NaN means "not measured
here") contributes its latest measurement up to that evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

RUN_COLUMNS = ("task", "rule", "learning_rate", "seed")
CELL_COLUMNS = ("task", "rule", "learning_rate")
NON_METRICS = frozenset(RUN_COLUMNS + ("step", "diverged", "diverged_step", "diverged_reason"))
# Metrics measured at every evaluation on the evaluation sets (losses, scores, gaps):
# non-finite means the network blew up. Probes' metrics are not checked: NaN there
# means "not measured at this evaluation", and +inf is a legitimate value of some
# (``predicted_lambda_bound`` when c <= 0).
DIVERGENCE_SUFFIXES = ("_loss", "_acc")
# Shown first in summaries; other metrics follow in name order.
HEADLINE = (
  "gap_acc",
  "gap_loss",
  "train_acc",
  "test_acc",
  "test_clean_acc",
  "val_acc",
  "train_loss",
  "test_loss",
  "test_clean_loss",
  "val_loss",
  "lambda_max",
  "align_cos",
)


def as_float(value) -> float:
  """A table cell as a float: NaN for blanks and non-numbers."""
  if isinstance(value, bool):
    return float(value)
  try:
    return float(value)
  except (TypeError, ValueError):
    return math.nan


def metric_names(rows: Iterable[Mapping]) -> list[str]:
  """Metric columns of ``rows``: headline metrics first, then the rest by name."""
  names: set[str] = set()
  for row in rows:
    names.update(k for k in row if k not in NON_METRICS)
  return [m for m in HEADLINE if m in names] + sorted(names - set(HEADLINE))


def group_rows(rows: Iterable[Mapping], columns: Sequence[str]) -> dict[tuple, list[Mapping]]:
  """Rows grouped by the values of ``columns``, groups in order of first appearance."""
  groups: dict[tuple, list[Mapping]] = {}
  for row in rows:
    groups.setdefault(tuple(row[c] for c in columns), []).append(row)
  return groups


def checked_for_divergence(name: str) -> bool:
  """Whether a non-finite value of metric ``name`` at an evaluation marks the seed diverged."""
  return name.endswith(DIVERGENCE_SUFFIXES) and name not in NON_METRICS


def _non_finite(row: Mapping, names: Sequence[str]) -> list[str]:
  return [n for n in names if n in row and not math.isfinite(as_float(row[n]))]


def divergence_reason(row: Mapping, names: Sequence[str], previous_step) -> str:
  """Why a seed is diverged at its first diverged evaluation ``row``."""
  bad = _non_finite(row, names)
  if bad:
    return f"non-finite {', '.join(bad)} at the evaluation of step {row['step']}"
  since = f" after step {previous_step}" if previous_step is not None else ""
  return (
    f"training loss non-finite or above max_loss (or non-finite parameters){since}, "
    f"found at the evaluation of step {row['step']}"
  )


def final_records(rows: Sequence[Mapping]) -> list[dict]:
  """One record per run (task, rule, learning rate, seed) with its final metric values.

  Each record has the run's columns; ``diverged`` (see the module docstring),
  ``diverged_step`` (the first diverged evaluation, NaN if none) and
  ``diverged_reason`` (``""`` if none); ``step``, the evaluation its values come
  from (the last one, or the last one before divergence); and per metric its
  value there (a sparse probe: its latest measurement up to ``step``). A seed
  diverged at its first evaluation has NaN values.
  """
  names = metric_names(rows)
  checked = [n for n in names if checked_for_divergence(n)]
  records = []
  for key, group in group_rows(rows, RUN_COLUMNS).items():
    group = sorted(group, key=lambda r: r["step"])
    first_bad = next(
      (
        i
        for i, r in enumerate(group)
        if as_float(r.get("diverged", False)) == 1.0 or _non_finite(r, checked)
      ),
      None,
    )
    healthy = group if first_bad is None else group[:first_bad]
    rec = dict(zip(RUN_COLUMNS, key, strict=True))
    rec["step"] = healthy[-1]["step"] if healthy else group[0]["step"]
    rec["diverged"] = first_bad is not None
    rec["diverged_step"] = group[first_bad]["step"] if first_bad is not None else math.nan
    rec["diverged_reason"] = (
      divergence_reason(group[first_bad], checked, healthy[-1]["step"] if healthy else None)
      if first_bad is not None
      else ""
    )
    for name in names:
      values = [as_float(r.get(name)) for r in healthy]
      if name in checked:
        rec[name] = values[-1] if values else math.nan
      else:
        measured = [v for v in values if not math.isnan(v)]
        rec[name] = measured[-1] if measured else math.nan
    records.append(rec)
  return records


def mean_std_sem(values: Sequence[float]) -> tuple[float, float, float, int]:
  """Mean, sample std (ddof 1), s.e.m. and count over the non-NaN values."""
  x = np.asarray([v for v in values if not math.isnan(v)], float)
  n = x.size
  if n == 0:
    return math.nan, math.nan, math.nan, 0
  std = float(np.std(x, ddof=1)) if n > 1 else math.nan
  return float(np.mean(x)), std, std / math.sqrt(n) if n > 1 else math.nan, n


def summarize(finals: Sequence[Mapping]) -> list[dict]:
  """Per task x rule x learning rate: seeds, diverged count, and mean/std of final metrics.

  Columns: ``task, rule, learning_rate, steps, seeds`` (runs), ``diverged``
  (runs that diverged), ``n`` (the others, over which every statistic is
  taken), then ``<metric>_mean`` and ``<metric>_std`` (sample std, ddof 1;
  NaN when ``n < 2``) per metric. NaN values (a probe never measured) are
  left out of their metric's statistics.
  """
  names = metric_names(finals)
  out = []
  for key, group in group_rows(finals, CELL_COLUMNS).items():
    kept = [r for r in group if not r["diverged"]]
    rec = dict(zip(CELL_COLUMNS, key, strict=True))
    rec["steps"] = max(r["step"] for r in group)
    rec["seeds"] = len(group)
    rec["diverged"] = len(group) - len(kept)
    rec["n"] = len(kept)
    for name in names:
      mean, std, _, _ = mean_std_sem([as_float(r[name]) for r in kept])
      rec[f"{name}_mean"] = mean
      rec[f"{name}_std"] = std
    out.append(rec)
  return out


class Correlation(NamedTuple):
  """Pearson and Spearman correlations of two samples, with two-sided p-values."""

  n: int
  pearson_r: float
  pearson_p: float
  spearman_r: float
  spearman_p: float


def correlation(x: Sequence[float], y: Sequence[float]) -> Correlation:
  """Pearson and Spearman r and p over the pairs where both are finite (scipy.stats).

  Returns NaNs when fewer than 3 pairs remain or either sample is constant.
  """
  from scipy import stats as sp_stats  # local: scipy.stats takes a second to import

  x = np.asarray(x, float)
  y = np.asarray(y, float)
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  n = int(x.size)
  if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return Correlation(n, math.nan, math.nan, math.nan, math.nan)
  pearson = sp_stats.pearsonr(x, y)
  spearman = sp_stats.spearmanr(x, y)
  return Correlation(
    n,
    float(pearson.statistic),
    float(pearson.pvalue),
    float(spearman.statistic),
    float(spearman.pvalue),
  )


# ------------------------------------------------------------ two-sample statistics


def finite(values: Iterable) -> np.ndarray:
  """The finite values of ``values`` as a float64 array (blanks and NaN dropped)."""
  x = np.asarray([as_float(v) for v in values], np.float64)
  return x[np.isfinite(x)]


def describe(values: Iterable) -> dict:
  """``n``, ``mean``, ``sd`` (ddof 1), ``median`` of the finite values (NaN where undefined)."""
  x = finite(values)
  return {
    "n": int(x.size),
    "mean": float(x.mean()) if x.size else math.nan,
    "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
    "median": float(np.median(x)) if x.size else math.nan,
  }


def cohens_d(x: Iterable, y: Iterable) -> float:
  r"""Cohen's d, :math:`(\bar x - \bar y) / s_p` with the pooled sd (ddof 1); NaN if undefined."""
  x, y = finite(x), finite(y)
  if x.size < 2 or y.size < 2:
    return math.nan
  pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2)
  if pooled == 0:
    return math.nan
  return float((x.mean() - y.mean()) / math.sqrt(pooled))


def cliffs_delta(x: Iterable, y: Iterable) -> float:
  r"""Cliff's delta :math:`P(X > Y) - P(X < Y)` over all pairs, in :math:`[-1, 1]`."""
  x, y = finite(x), finite(y)
  if x.size == 0 or y.size == 0:
    return math.nan
  diff = x[:, None] - y[None, :]
  return float((np.sum(diff > 0) - np.sum(diff < 0)) / diff.size)


def mann_whitney_p(x: Iterable, y: Iterable) -> float:
  """Two-sided Mann-Whitney U p-value (scipy.stats; exact for small samples without ties)."""
  from scipy import stats as sp_stats

  x, y = finite(x), finite(y)
  if x.size == 0 or y.size == 0:
    return math.nan
  if np.ptp(np.concatenate([x, y])) == 0:
    return 1.0
  return float(sp_stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


class Interval(NamedTuple):
  """An estimate with a confidence interval."""

  estimate: float
  low: float
  high: float


def bootstrap_diff_ci(
  x: Iterable, y: Iterable, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
  r"""Difference of means :math:`\bar x - \bar y` with a percentile-bootstrap CI.

  Each sample is resampled with replacement on its own (the samples are
  independent runs); the interval is the :math:`(1 \pm \text{level})/2`
  quantiles of the resampled differences. The generator is seeded, so a report
  regenerates to the same digits.

  Args:
    x, y: the two samples (non-finite values are dropped).
    level: the coverage, in (0, 1).
    resamples: bootstrap resamples.
    seed: the generator's seed.

  Returns:
    ``(difference, low, high)``; NaN when either sample is empty.
  """
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  x, y = finite(x), finite(y)
  if x.size == 0 or y.size == 0:
    return Interval(math.nan, math.nan, math.nan)
  rng = np.random.default_rng(seed)
  bx = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
  by = y[rng.integers(0, y.size, (resamples, y.size))].mean(axis=1)
  low, high = np.quantile(bx - by, [(1 - level) / 2, (1 + level) / 2])
  return Interval(float(x.mean() - y.mean()), float(low), float(high))


def bootstrap_ci(
  x: Iterable,
  statistic=np.median,
  level: float = 0.95,
  resamples: int = 10_000,
  seed: int = 0,
) -> Interval:
  r"""A one-sample statistic (default the median) with its percentile-bootstrap CI.

  The sample is resampled with replacement; the interval is the
  :math:`(1 \pm \text{level})/2` quantiles of the statistic over the resamples
  (seeded, so a report regenerates to the same digits).

  Args:
    x: the sample (non-finite values are dropped).
    statistic: a reduction with an ``axis`` argument (``np.median``, ``np.mean``).
    level: the coverage, in (0, 1).
    resamples: bootstrap resamples.
    seed: the generator's seed.

  Returns:
    ``(statistic, low, high)``; NaN when the sample is empty.
  """
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  x = finite(x)
  if x.size == 0:
    return Interval(math.nan, math.nan, math.nan)
  rng = np.random.default_rng(seed)
  boot = statistic(x[rng.integers(0, x.size, (resamples, x.size))], axis=1)
  low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
  return Interval(float(statistic(x)), float(low), float(high))


def holm(pvalues: Sequence[float]) -> list[float]:
  r"""Holm's step-down adjusted p-values (family-wise error), in the input order.

  Sorted ascending, :math:`\tilde p_{(i)} = \max_{j \le i} \min(1, (m - j + 1) p_{(j)})`
  over the :math:`m` finite p-values; NaN stays NaN and is not counted in :math:`m`.
  """
  p = np.asarray(pvalues, np.float64)
  out = np.full(p.shape, np.nan)
  idx = np.flatnonzero(np.isfinite(p))
  m = idx.size
  running = 0.0
  for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
    running = max(running, min(1.0, (m - rank) * p[i]))
    out[i] = running
  return [float(v) for v in out]


class VarianceTest(NamedTuple):
  """Variance ratio :math:`s_x^2 / s_y^2` and the Brown-Forsythe test of equal spread."""

  ratio: float
  statistic: float
  p: float


def brown_forsythe(x: Iterable, y: Iterable) -> VarianceTest:
  r"""Variance ratio and the Brown-Forsythe (Levene, median-centred) test of two samples.

  With :math:`z_{gi} = |x_{gi} - \mathrm{median}_g|`, the statistic is the
  one-way ANOVA F of :math:`z` over the two groups,

  .. math::

    W = (N - 2) \frac{\sum_g n_g (\bar z_g - \bar z)^2}{\sum_g \sum_i (z_{gi} - \bar z_g)^2},

  F-distributed with (1, N - 2) degrees of freedom under equal spread.

  Returns:
    ``(ratio, W, p)``; NaN when a sample has fewer than 2 values or the
    spreads are all zero.
  """
  from scipy import stats as sp_stats

  x, y = finite(x), finite(y)
  if x.size < 2 or y.size < 2:
    return VarianceTest(math.nan, math.nan, math.nan)
  vy = y.var(ddof=1)
  ratio = float(x.var(ddof=1) / vy) if vy > 0 else (math.nan if x.var() == 0 else math.inf)
  z = [np.abs(x - np.median(x)), np.abs(y - np.median(y))]
  grand = np.concatenate(z).mean()
  between = sum(g.size * (g.mean() - grand) ** 2 for g in z)
  within = sum(((g - g.mean()) ** 2).sum() for g in z)
  dof = x.size + y.size - 2
  if within == 0:
    return VarianceTest(ratio, math.nan, math.nan)
  w = float(dof * between / within)
  return VarianceTest(ratio, w, float(sp_stats.f.sf(w, 1, dof)))


class PartialCorrelation(NamedTuple):
  """A rank correlation with a grouping factor removed, and its two-sided p-value."""

  n: int
  groups: int
  r: float
  p: float


def rank_partial_correlation(x: Iterable, y: Iterable, groups: Sequence[str]) -> PartialCorrelation:
  r"""Spearman correlation of ``x`` and ``y`` with the factor ``groups`` partialled out.

  Both samples are ranked over all runs, each rank is replaced by its residual
  from its group's mean rank (regression on the group dummies), and the
  residuals are correlated. Differences between groups (rules) therefore
  cannot make a correlation: only the joint variation within groups counts.
  The p-value uses :math:`t = r\sqrt{\nu / (1 - r^2)}` with
  :math:`\nu = n - 2 - (k - 1)` for :math:`k` groups.

  Returns:
    ``(n, k, r, p)`` over the pairs where both are finite; NaN when
    :math:`\nu < 1` or a residual is constant.
  """
  from scipy import stats as sp_stats

  x = np.asarray([as_float(v) for v in x], np.float64)
  y = np.asarray([as_float(v) for v in y], np.float64)
  g = np.asarray(groups)
  if not x.shape == y.shape == g.shape:
    raise ValueError(f"x, y and groups differ in length: {x.shape}, {y.shape}, {g.shape}")
  ok = np.isfinite(x) & np.isfinite(y)
  x, y, g = x[ok], y[ok], g[ok]
  n, k = int(x.size), int(np.unique(g).size)
  dof = n - 2 - (k - 1)
  if dof < 1:
    return PartialCorrelation(n, k, math.nan, math.nan)
  rx, ry = sp_stats.rankdata(x), sp_stats.rankdata(y)
  for label in np.unique(g):
    at = g == label
    rx[at] -= rx[at].mean()
    ry[at] -= ry[at].mean()
  sx, sy = np.sqrt((rx**2).sum()), np.sqrt((ry**2).sum())
  if sx == 0 or sy == 0:
    return PartialCorrelation(n, k, math.nan, math.nan)
  r = float(np.clip((rx * ry).sum() / (sx * sy), -1.0, 1.0))
  if abs(r) == 1.0:
    return PartialCorrelation(n, k, r, 0.0)
  t = r * math.sqrt(dof / (1 - r * r))
  return PartialCorrelation(n, k, r, float(2 * sp_stats.t.sf(abs(t), dof)))
