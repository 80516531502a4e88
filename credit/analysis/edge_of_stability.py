r"""Where a run stops getting sharper, and how close to an edge of stability it is there.

**Where it stops getting sharper.** Take one run's sharpness series over its
evaluations, :math:`x_1, \dots, x_n` (the measured ones: a probe measured every
:math:`k` evaluations leaves NaN in between, which is dropped; steps keep their
own values). Smooth it with a centred running median of ``window`` measured
points (shrinking at the ends), :math:`s_i = \mathrm{median}(x_{i-h}, \dots,
x_{i+h})`, so that one noisy Lanczos estimate or one catapult spike cannot end
or prolong the rise. A leading fall is skipped first: sharpness that starts
above the level it settles at (a large initialization, a catapult in the first
steps) falls until

.. math::

  i_0 = \min \{ i : s_{i+1} \ge s_i - \tau |s_i| \},

the first evaluation after which it no longer drops by more than the relative
tolerance :math:`\tau` (``tolerance``). From there the series **stops getting
sharper** at

.. math::

  i^* = \min \{ i \ge i_0 : s_j \le s_i + \tau |s_i| \ \text{for every}\ j > i \},

the first evaluation after which the smoothed sharpness never again exceeds its
value there by more than :math:`\tau`. :math:`i^*` always exists (the last point
qualifies trivially); the run counts as having stopped (``found``) only when at
least ``min_after`` measured evaluations follow :math:`i^*`. Otherwise it is
**still rising** at the end of training, which is reported as such, never as a
plateau. ``rose`` says whether the smoothed sharpness climbed by more than
:math:`\tau` from :math:`s_{i_0}` up to :math:`i^*` (a run that is already at its
level after the leading fall "stops" at :math:`i_0`).

The evaluations from :math:`i^*` to the end are the run's **plateau**. Because
:math:`s_{i^*}` must be within :math:`\tau` of every later value, it sits near the
plateau's upper envelope when the sharpness oscillates around its level (as it
does at an edge of stability); the median over the plateau is where the run
sits. Both are reported (:func:`at_plateau`).

**How close to the edge.** Over the plateau (and at :math:`i^*`) a run's sharpness
is compared with a threshold: per optimizer (:func:`optimizer_threshold`) the edge of stability of
the update on a quadratic,

* SGD: :math:`\lambda_{max}(H) < 2/\eta`;
* heavy-ball momentum :math:`\beta`: :math:`\lambda_{max}(H) < (2 + 2\beta)/\eta`;
* Adam / AdamW: :math:`\lambda_{max}(P^{-1/2} H P^{-1/2}) < (2 + 2\beta_1)/((1 - \beta_1)\eta)`
  with :math:`P = \mathrm{diag}(\sqrt{\hat v} + \epsilon)` (Cohen et al. 2022,
  "Adaptive gradient methods at the edge of stability");
* RMSprop (no momentum): :math:`\lambda_{max}(P^{-1/2} H P^{-1/2}) < 2/\eta`;

and, for SGD, the rule's own bound :math:`2/(\eta c)` (``theory_stability_ratio``
:math:`= \eta c \lambda_{max}/2`) and the spectral radius of :math:`I - \eta
J_{rule}` (``update_map_radius``). A ratio **sits at the edge** when it is
:math:`\approx 1`: inside a band (:data:`BAND`, a parameter).

Sparse metrics (the theory probe runs every few evaluations) are read at the
first evaluation at or after :math:`i^*` where they were measured (on the
plateau: the smoothed sharpness never rises past it from :math:`i^*` on), else at
the last one before it. Everything here is a pure function of one run's rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from credit.analysis import stats
from credit.training import optimizers

import numpy as np

TOLERANCE = 0.1  # relative rise that still counts as "not sharper"
WINDOW = 3  # running-median width, in measured evaluations
# Measured evaluations after the plateau needed to call it one: with 3, a series that keeps
# rising by 5% per evaluation (half the tolerance) is still rising at its end.
MIN_AFTER = 3
BAND = (0.8, 1.25)  # a ratio in this band sits at the edge (symmetric in log: 1/1.25 = 0.8)


class Plateau(NamedTuple):
  """Where a sharpness series stops rising (module docstring).

  Attributes:
    found: whether the series stops rising before its end (``min_after`` points follow).
    index: :math:`i^*` in the measured points (-1 when fewer than one point is measured).
    step: the evaluation step of :math:`i^*` (NaN when no point is measured).
    value: the smoothed sharpness :math:`s_{i^*}`.
    rose: whether :math:`s` climbed by more than the tolerance from :math:`i_0` to :math:`i^*`.
    measured: how many points were measured.
  """

  found: bool
  index: int
  step: float
  value: float
  rose: bool
  measured: int


def running_median(values: Sequence[float], window: int = WINDOW) -> np.ndarray:
  """Centred running median of width ``window`` (odd), shrinking at the ends.

  Raises:
    ValueError: ``window`` is not a positive odd integer.
  """
  if window < 1 or window % 2 == 0:
    raise ValueError(f"window must be a positive odd integer, got {window}")
  x = np.asarray(values, np.float64)
  h = window // 2
  return np.asarray([np.median(x[max(0, i - h) : i + h + 1]) for i in range(x.size)])


def plateau(
  steps: Sequence[float],
  values: Sequence[float],
  tolerance: float = TOLERANCE,
  window: int = WINDOW,
  min_after: int = MIN_AFTER,
) -> Plateau:
  r"""The evaluation from which a sharpness series stops rising (module docstring).

  Args:
    steps: the evaluation steps, one per value.
    values: the sharpness at each step; NaN where it was not measured.
    tolerance: :math:`\tau`, the relative rise that still counts as "not sharper" (>= 0).
    window: the running median's width in measured points (positive, odd; 1: no smoothing).
    min_after: measured points that must follow :math:`i^*` for it to count as a plateau.

  Returns:
    A :class:`Plateau`; ``found`` is False for a series still rising at its end
    (or too short to tell).

  Raises:
    ValueError: steps and values differ in length, or a negative tolerance.
  """
  if len(steps) != len(values):
    raise ValueError(f"{len(steps)} steps but {len(values)} values")
  if not tolerance >= 0:
    raise ValueError(f"tolerance must be >= 0, got {tolerance}")
  x = np.asarray([stats.as_float(v) for v in values], np.float64)
  t = np.asarray([stats.as_float(s) for s in steps], np.float64)
  ok = ~np.isnan(x)
  x, t = x[ok], t[ok]
  n = int(x.size)
  if n == 0:
    return Plateau(False, -1, math.nan, math.nan, False, 0)
  s = running_median(x, window)
  slack = tolerance * np.abs(s)
  not_falling = np.concatenate([s[1:] >= s[:-1] - slack[:-1], [True]])
  i0 = int(np.argmax(not_falling))
  # later_max[i] = max_{j > i} s_j (-inf after the last point)
  later_max = np.concatenate([np.maximum.accumulate(s[::-1])[::-1][1:], [-np.inf]])
  stops = (later_max <= s + slack) & (np.arange(n) >= i0)
  i = int(np.argmax(stops))  # the last point always stops, so argmax finds the first
  rose = bool(s[i0 : i + 1].max() > s[i0] + slack[i0])
  return Plateau(n - 1 - i >= min_after, i, float(t[i]), float(s[i]), rose, n)


def value_from(rows: Sequence[Mapping], step: float, name: str) -> float:
  """``name`` at the first evaluation at or after ``step`` where it was measured, else the last
  one before (NaN when never measured). ``rows`` sorted by step."""
  after = [stats.as_float(r.get(name)) for r in rows if stats.as_float(r["step"]) >= step]
  before = [stats.as_float(r.get(name)) for r in rows if stats.as_float(r["step"]) < step]
  for v in after:
    if not math.isnan(v):
      return v
  for v in reversed(before):
    if not math.isnan(v):
      return v
  return math.nan


PRECOND_METRIC = "lambda_max_precond"


def bounded_metric(applies_to: str | None) -> str | None:
  """The results column a threshold bounds: ``lambda_max`` (on H), ``lambda_max_precond``
  (on the preconditioned P⁻¹H), None (no threshold)."""
  if applies_to is None:
    return None
  return "lambda_max" if applies_to == "H" else PRECOND_METRIC


def optimizer_threshold(opt: Mapping, eta: float) -> dict:
  r"""The optimizer's edge of stability at learning rate ``eta`` (module docstring).

  The formulas: :func:`credit.training.optimizers.stability_threshold`.

  Returns:
    ``optimizer``, ``applies_to`` (``"H"`` or ``"P⁻¹H"``; :func:`bounded_metric` names
    the results column), ``formula`` and ``value``; ``applies_to`` and ``formula`` None
    and ``value`` NaN for an optimizer without a derived threshold.
  """
  return {"optimizer": opt.get("name"), **optimizers.stability_threshold(opt, eta)._asdict()}


def at_plateau(
  rows: Sequence[Mapping],
  series: str,
  names: Sequence[str] = (),
  tolerance: float = TOLERANCE,
  window: int = WINDOW,
  min_after: int = MIN_AFTER,
) -> dict:
  """One run's plateau of metric ``series`` and each of ``names`` there.

  Args:
    rows: one run's evaluations (healthy part: callers drop diverged evaluations).
    series: the sharpness column whose plateau is found.
    names: columns read at the plateau (:func:`value_from`).
    tolerance, window, min_after: as :func:`plateau`.

  Returns:
    ``found``, ``rose``, ``step``, ``value`` (smoothed ``series`` at :math:`i^*`),
    ``measured``; ``series`` (its raw value at :math:`i^*`) and each of ``names``
    there (:func:`value_from`); ``<name>_plateau`` for ``series`` and each name: the
    median of its measured values over the plateau (steps from :math:`i^*` on; the value
    at :math:`i^*` when none is measured there). NaN when ``found`` is False.
  """
  ordered = sorted(rows, key=lambda r: stats.as_float(r["step"]))
  p = plateau(
    [r["step"] for r in ordered],
    [r.get(series) for r in ordered],
    tolerance,
    window,
    min_after,
  )
  out = {"found": p.found, "rose": p.rose, "step": p.step, "value": p.value, "measured": p.measured}
  for name in (series, *names):
    key = "series" if name == series else name
    at = value_from(ordered, p.step, name) if p.found else math.nan
    on = [stats.as_float(r.get(name)) for r in ordered if stats.as_float(r["step"]) >= p.step]
    on = [v for v in on if not math.isnan(v)]
    out[key] = at
    out[f"{key}_plateau"] = float(np.median(on)) if (p.found and on) else at
  return out


def band_verdict(low: float, high: float, band: tuple[float, float] = BAND) -> str:
  """Where a ratio's confidence interval ``[low, high]`` lies against the band around 1.

  Returns:
    ``"at the edge"`` (inside the band), ``"below the edge"`` / ``"above the edge"``
    (entirely outside it), ``"inconclusive"`` (across a border) or ``"n/a"`` (NaN).
  """
  if math.isnan(low) or math.isnan(high):
    return "n/a"
  if band[0] <= low and high <= band[1]:
    return "at the edge"
  if high < band[0]:
    return "below the edge"
  if low > band[1]:
    return "above the edge"
  return "inconclusive"
