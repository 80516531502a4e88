r"""Matched fit: each run's values where it first fits its task, and at a matched training loss.

A gap only means something at a given level of fit: a rule that barely learns
has a small gap. A sweep declares a **fit criterion** per task
(``sweep.fit_criteria``, validated by :func:`credit.sweeps.cells.validate_sweep`):

  ``{task: {"metric": "train_acc", "at_least": 0.95}}``

(``*_acc`` is the task's score: accuracy, or :math:`R^2` for regression). For one
run's evaluations (healthy part only: up to its divergence, as in
:func:`credit.analysis.stats.final_records`):

* :func:`first_fit`: the values at the **first evaluation meeting the
  criterion** (the headline of a report), or ``None`` if it never does;
* :func:`at_loss`: each metric linearly interpolated in the training loss at
  the first crossing of a target loss :math:`L^*`: with consecutive evaluations
  :math:`L_{k-1} > L^* \ge L_k`, :math:`m^* = m_{k-1} + (m_k - m_{k-1})
  (L_{k-1} - L^*) / (L_{k-1} - L_k)`; ``None`` if the run never gets down to
  :math:`L^*`.

A probe measured less often than evaluations (NaN = not measured here)
contributes its latest measurement up to the evaluation in question.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from credit.analysis import stats


class FitCriterion(NamedTuple):
  """A run fits its task at an evaluation where ``metric >= at_least``."""

  metric: str
  at_least: float

  def describe(self) -> str:
    return f"{self.metric} ≥ {self.at_least:g}"


def criterion(spec: Mapping | None) -> FitCriterion | None:
  """A :class:`FitCriterion` from its config block (``None`` stays ``None``)."""
  if not spec:
    return None
  return FitCriterion(str(spec["metric"]), float(spec["at_least"]))


def healthy_rows(rows: Sequence[Mapping]) -> list[Mapping]:
  """One run's evaluations sorted by step, up to (not including) its first diverged one."""
  ordered = sorted(rows, key=lambda r: r["step"])
  checked = [n for n in stats.metric_names(ordered) if stats.checked_for_divergence(n)]
  out = []
  for row in ordered:
    bad = as_flag(row.get("diverged", False)) or any(
      n in row and not math.isfinite(stats.as_float(row[n])) for n in checked
    )
    if bad:
      break
    out.append(row)
  return out


def as_flag(value) -> bool:
  return stats.as_float(value) == 1.0 or value == "True"


def values_at(rows: Sequence[Mapping], index: int, names: Sequence[str]) -> dict[str, float]:
  """Each metric at evaluation ``index`` (a sparse probe: its latest value up to there)."""
  out = {}
  for name in names:
    value = math.nan
    for row in reversed(rows[: index + 1]):
      value = stats.as_float(row.get(name))
      if not math.isnan(value):
        break
    out[name] = value
  return out


def first_fit(
  rows: Sequence[Mapping], fit: FitCriterion, names: Sequence[str]
) -> dict[str, float] | None:
  """``names`` (and ``step``) at the first healthy evaluation meeting ``fit``, else ``None``."""
  healthy = healthy_rows(rows)
  for i, row in enumerate(healthy):
    if stats.as_float(row.get(fit.metric)) >= fit.at_least:
      return {"step": float(row["step"]), **values_at(healthy, i, names)}
  return None


def fits_at_end(rows: Sequence[Mapping], fit: FitCriterion) -> bool:
  """Whether the run's last healthy evaluation meets ``fit``."""
  healthy = healthy_rows(rows)
  return bool(healthy) and stats.as_float(healthy[-1].get(fit.metric)) >= fit.at_least


def at_loss(
  rows: Sequence[Mapping], target: float, names: Sequence[str], loss: str = "train_loss"
) -> dict[str, float] | None:
  """``names`` interpolated at the first crossing of ``loss <= target`` (module docstring).

  Returns:
    The interpolated values and ``step`` (interpolated too), or ``None`` if the
    run's training loss never reaches ``target``. A run already below it at its
    first evaluation gives that evaluation's values.
  """
  healthy = healthy_rows(rows)
  for i, row in enumerate(healthy):
    now = stats.as_float(row.get(loss))
    if not now <= target:
      continue
    here = {"step": float(row["step"]), **values_at(healthy, i, names)}
    if i == 0:
      return here
    before_loss = stats.as_float(healthy[i - 1].get(loss))
    before = {"step": float(healthy[i - 1]["step"]), **values_at(healthy, i - 1, names)}
    w = (before_loss - target) / (before_loss - now)
    return {k: before[k] + w * (here[k] - before[k]) for k in here}
  return None


def window_mean(
  rows: Sequence[Mapping], start: float, stop: float, names: Sequence[str]
) -> dict[str, float] | None:
  """Each metric's mean over the healthy evaluations with ``start <= step <= stop``.

  A sparse probe contributes its latest measurement up to each of those evaluations
  (so a probe measured once in the window counts at every evaluation after it).
  ``step`` is ``start`` and ``evaluations`` how many were averaged; ``None`` when no
  healthy evaluation lies in the window (the run diverged before it).
  """
  healthy = healthy_rows(rows)
  at = [i for i, r in enumerate(healthy) if start <= stats.as_float(r["step"]) <= stop]
  if not at:
    return None
  values = [values_at(healthy, i, names) for i in at]
  out: dict[str, float] = {"step": float(start), "evaluations": float(len(at))}
  for name in names:
    x = [v[name] for v in values if not math.isnan(v[name])]
    out[name] = float(sum(x) / len(x)) if x else math.nan
  return out
