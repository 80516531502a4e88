"""Statistics over tidy metric rows: final values per seed, per-cell summaries, correlations.

Rows are dicts as in ``results.csv`` (one per task, rule, learning rate, seed
and evaluation step).

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
