"""Statistics over tidy metric rows: final values per seed, per-cell summaries, correlations.

Rows are dicts as in ``results.csv`` (one per task, rule, learning rate, seed
and evaluation step). A seed's *final* value of a metric is its value at the
last evaluation where it was measured (not NaN), so probes run less often
than evaluations still have one. Seeds whose run diverged are left out of
every mean and correlation and counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

RUN_COLUMNS = ("task", "rule", "learning_rate", "seed")
CELL_COLUMNS = ("task", "rule", "learning_rate")
NON_METRICS = frozenset(RUN_COLUMNS + ("step", "diverged"))
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


def final_records(rows: Sequence[Mapping]) -> list[dict]:
  """One record per run (task, rule, learning rate, seed) with final metric values.

  Each record has the run's columns, ``step`` (its last evaluation),
  ``diverged`` (at the last evaluation) and, per metric, the value at the
  last evaluation where it is not NaN (NaN if never measured).
  """
  names = metric_names(rows)
  records = []
  for key, group in group_rows(rows, RUN_COLUMNS).items():
    group = sorted(group, key=lambda r: r["step"])
    rec = dict(zip(RUN_COLUMNS, key, strict=True))
    rec["step"] = group[-1]["step"]
    rec["diverged"] = as_float(group[-1].get("diverged", False)) == 1.0
    for name in names:
      values = [as_float(r.get(name)) for r in group]
      finite = [v for v in values if not math.isnan(v)]
      rec[name] = finite[-1] if finite else math.nan
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
