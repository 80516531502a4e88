r"""Directional tests, equivalence tests and power for the claims' verdicts (pure, float64).

The claims of a report are directional ("the rule's gap is larger than BPTT's"), so
each contrast is judged by one-sided tests whose direction is that of the statistic
the test itself uses, never the difference of means:

* two samples, a shift: the Mann-Whitney U test (:func:`rank_shift`). Its statistic
  is Cliff's :math:`\delta = P(X > Y) - P(X < Y)`; the estimate shown beside it is
  the Hodges-Lehmann shift :math:`\mathrm{median}_{ij}(x_i - y_j)` with its
  distribution-free (Moses) CI. Equivalence within :math:`\pm m` is the two one-sided
  tests (TOST) of the shifted samples: :math:`x - m` against :math:`y` ("x is not
  above y by m or more") and :math:`x + m` against :math:`y` ("not below by m");
* two samples, a spread: the Brown-Forsythe test made one-sided
  (:func:`spread`): the t-test of the absolute deviations from each sample's median;
* a correlation with a factor partialled out: the t-test of
  :func:`credit.analysis.stats.rank_partial_correlation` made one-sided, and TOST on
  Fisher's :math:`z` (:func:`partial_correlation`);
* two proportions: Fisher's exact test, one-sided both ways (:func:`fit_rates`).

Each returns the one-sided p-values *for* the claimed direction and *against* it,
the equivalence p-value where a margin is given, the smallest p-value the test can
reach at these sample sizes (complete separation), and the minimum detectable effect
(MDE) at a given power and level, so that "inconclusive" can say how large an effect
the data could have shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from credit.analysis import stats

import numpy as np

POWER = 0.8


class Directional(NamedTuple):
  """One contrast: its estimate with CI, one-sided p both ways, equivalence p, limits.

  ``greater``/``less``: one-sided p-values that the first sample lies above / below
  the second (their statistic's direction). ``equivalence``: the TOST p-value at the
  margin (NaN without a margin). ``min_p``: the smallest one-sided p-value the test
  can give at these sample sizes. ``mde``: the effect (in the estimate's unit)
  detectable with power :data:`POWER` by the one-sided test at the level it is asked
  for (NaN where no spread is known).
  """

  n: tuple[int, int]
  estimate: float
  ci: tuple[float, float]
  statistic: float
  greater: float
  less: float
  equivalence: float
  min_p: float
  mde: float


def _z(q: float) -> float:
  from scipy import stats as sp_stats

  return float(sp_stats.norm.ppf(q))


def hodges_lehmann(x: Iterable, y: Iterable) -> float:
  r"""The Hodges-Lehmann shift :math:`\mathrm{median}_{ij}(x_i - y_j)`; NaN if a sample is empty."""
  x, y = stats.finite(x), stats.finite(y)
  if x.size == 0 or y.size == 0:
    return math.nan
  return float(np.median(x[:, None] - y[None, :]))


def hodges_lehmann_ci(x: Iterable, y: Iterable, level: float = 0.95) -> stats.Interval:
  r"""The Hodges-Lehmann shift with its distribution-free (Moses) confidence interval.

  With the :math:`N = n_x n_y` pairwise differences sorted, :math:`D_{(1)} \le \dots \le
  D_{(N)}`, the interval is :math:`[D_{(k+1)}, D_{(N-k)}]` where :math:`k` is the
  Mann-Whitney critical count, :math:`k = \lfloor N/2 - z_{(1+level)/2}
  \sqrt{n_x n_y (n_x + n_y + 1)/12} \rfloor` (normal approximation; at least 0, so tiny
  samples give the range of the differences).
  """
  x, y = stats.finite(x), stats.finite(y)
  if x.size == 0 or y.size == 0:
    return stats.Interval(math.nan, math.nan, math.nan)
  d = np.sort((x[:, None] - y[None, :]).ravel())
  n = d.size
  half = _z((1 + level) / 2) * math.sqrt(x.size * y.size * (x.size + y.size + 1) / 12)
  k = max(0, math.floor(n / 2 - half))
  return stats.Interval(float(np.median(d)), float(d[k]), float(d[n - 1 - k]))


def mann_whitney(x: Iterable, y: Iterable, alternative: str) -> float:
  """One-sided (``greater``/``less``) or two-sided Mann-Whitney p (scipy's automatic method).

  1 for a one-sided test of two constant equal samples (no evidence either way).
  """
  from scipy import stats as sp_stats

  x, y = stats.finite(x), stats.finite(y)
  if x.size == 0 or y.size == 0:
    return math.nan
  if np.ptp(np.concatenate([x, y])) == 0:
    return 1.0
  return float(sp_stats.mannwhitneyu(x, y, alternative=alternative).pvalue)


def min_mann_whitney_p(n_x: int, n_y: int) -> float:
  """The smallest one-sided Mann-Whitney p at these sizes: every x above every y.

  Computed by the same scipy call as the test itself, so it matches the method
  (exact or asymptotic) the test uses at these sizes.
  """
  if n_x < 1 or n_y < 1:
    return math.nan
  return mann_whitney(np.arange(n_x) + n_y, np.arange(n_y), "greater")


def shift_mde(x: Iterable, y: Iterable, alpha: float, power: float = POWER) -> float:
  r"""The shift the one-sided rank test detects with ``power`` at level ``alpha``.

  Normal theory for the t-test, :math:`(z_{1-\alpha} + z_{power})\, s_p
  \sqrt{1/n_x + 1/n_y}`, scaled by :math:`\sqrt{\pi/3}` (the Mann-Whitney test's
  asymptotic efficiency against the t-test is :math:`3/\pi` under normality, so it
  needs :math:`\pi/3` times the runs for the same power). :math:`s_p` is the pooled
  sd of the two samples. NaN when either has fewer than 2 values.
  """
  x, y = stats.finite(x), stats.finite(y)
  if x.size < 2 or y.size < 2 or not 0 < alpha < 1:
    return math.nan
  pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2)
  se = math.sqrt(pooled * (1 / x.size + 1 / y.size))
  return (_z(1 - alpha) + _z(power)) * se * math.sqrt(math.pi / 3)


def rank_shift(
  x: Iterable, y: Iterable, margin: float = math.nan, alpha: float = 0.05
) -> Directional:
  """``x`` against ``y`` by rank: Hodges-Lehmann shift, Mann-Whitney both ways, TOST at ``margin``.

  Args:
    x, y: the two samples (non-finite values dropped).
    margin: the equivalence margin (a shift within ``±margin`` counts as no effect); NaN:
      no equivalence test.
    alpha: the level at which the MDE is computed (the level the test must pass after
      correction).
  """
  x, y = stats.finite(x), stats.finite(y)
  hl = hodges_lehmann_ci(x, y)
  if math.isfinite(margin) and margin > 0 and x.size and y.size:
    # TOST: both "x - m is below y" and "x + m is above y" must be rejected.
    tost = max(mann_whitney(x - margin, y, "less"), mann_whitney(x + margin, y, "greater"))
  else:
    tost = math.nan
  return Directional(
    (int(x.size), int(y.size)),
    hl.estimate,
    (hl.low, hl.high),
    stats.cliffs_delta(x, y),
    mann_whitney(x, y, "greater"),
    mann_whitney(x, y, "less"),
    tost,
    min_mann_whitney_p(x.size, y.size),
    shift_mde(x, y, alpha),
  )


def spread(x: Iterable, y: Iterable, alpha: float = 0.05, power: float = POWER) -> Directional:
  r"""Is ``x`` more spread than ``y``: the Brown-Forsythe test, one-sided both ways.

  With :math:`z = |x - \mathrm{median}(x)|` per sample, Brown-Forsythe's W is the
  square of the two-sample pooled t of :math:`z`; the one-sided p-values are
  :math:`t`'s tails. The estimate is the variance ratio :math:`s_x^2/s_y^2` (CI:
  normal-theory F interval). The MDE is the variance ratio that the normal-theory
  one-sided F test detects with ``power`` at level ``alpha``. No equivalence margin.
  """
  from scipy import stats as sp_stats

  x, y = stats.finite(x), stats.finite(y)
  nan = math.nan
  if x.size < 2 or y.size < 2:
    return Directional((int(x.size), int(y.size)), nan, (nan, nan), nan, nan, nan, nan, nan, nan)
  bf = stats.brown_forsythe(x, y)
  zx, zy = np.abs(x - np.median(x)), np.abs(y - np.median(y))
  dof = x.size + y.size - 2
  if not math.isfinite(bf.statistic):
    greater = less = 1.0
  else:
    t = math.copysign(math.sqrt(bf.statistic), zx.mean() - zy.mean())
    greater, less = float(sp_stats.t.sf(t, dof)), float(sp_stats.t.cdf(t, dof))
  d1, d2 = x.size - 1, y.size - 1
  ci = (
    bf.ratio / float(sp_stats.f.ppf(0.975, d1, d2)),
    bf.ratio / float(sp_stats.f.ppf(0.025, d1, d2)),
  )
  mde = float(sp_stats.f.ppf(1 - alpha, d1, d2) / sp_stats.f.ppf(1 - power, d1, d2))
  # t grows without bound as the deviations separate: any level is reachable at n >= 2.
  return Directional(
    (int(x.size), int(y.size)), bf.ratio, ci, bf.statistic, greater, less, nan, 0.0, mde
  )


def partial_correlation(
  x: Iterable,
  y: Iterable,
  groups,
  margin: float = math.nan,
  alpha: float = 0.05,
  power: float = POWER,
) -> Directional:
  r"""The rank partial correlation of ``x`` and ``y`` (factor ``groups`` removed), one-sided.

  The t-test of :func:`credit.analysis.stats.rank_partial_correlation` with
  :math:`\nu = n - 2 - (k - 1)` degrees of freedom, one tail each way. Equivalence:
  TOST on Fisher's :math:`z = \mathrm{atanh}\, r` with standard error
  :math:`1/\sqrt{\nu - 1}` against :math:`\pm\mathrm{atanh}(margin)`. CI: the same
  normal interval, back-transformed. MDE: the :math:`r` detected with ``power`` at
  level ``alpha``, :math:`\tanh((z_{1-\alpha} + z_{power})/\sqrt{\nu - 1})`.
  """
  from scipy import stats as sp_stats

  pc = stats.rank_partial_correlation(x, y, groups)
  dof = pc.n - 2 - (pc.groups - 1)
  nan = math.nan
  if not math.isfinite(pc.r) or dof < 2:
    return Directional((pc.n, pc.groups), pc.r, (nan, nan), nan, nan, nan, nan, nan, nan)
  if abs(pc.r) == 1.0:
    greater, less = (0.0, 1.0) if pc.r > 0 else (1.0, 0.0)
  else:
    t = pc.r * math.sqrt(dof / (1 - pc.r * pc.r))
    greater, less = float(sp_stats.t.sf(t, dof)), float(sp_stats.t.cdf(t, dof))
  se = 1 / math.sqrt(dof - 1)
  z = math.atanh(max(min(pc.r, 1 - 1e-12), -1 + 1e-12))
  ci = (math.tanh(z - 1.959963984540054 * se), math.tanh(z + 1.959963984540054 * se))
  if math.isfinite(margin) and 0 < margin < 1:
    bound = math.atanh(margin)
    tost = max(
      float(sp_stats.norm.sf((z + bound) / se)), float(sp_stats.norm.cdf((z - bound) / se))
    )
  else:
    tost = nan
  mde = math.tanh((_z(1 - alpha) + _z(power)) * se)
  return Directional((pc.n, pc.groups), pc.r, ci, pc.r, greater, less, tost, 0.0, mde)


def fisher_less(fit_x: int, n_x: int, fit_y: int, n_y: int) -> float:
  """One-sided Fisher exact p that ``x`` succeeds less often than ``y``."""
  from scipy import stats as sp_stats

  table = [[fit_x, n_x - fit_x], [fit_y, n_y - fit_y]]
  return float(sp_stats.fisher_exact(table, alternative="less").pvalue)


def fit_rates(
  fit_x: int, n_x: int, fit_y: int, n_y: int, alpha: float = 0.05, power: float = POWER
) -> Directional:
  r"""Does ``x`` fit less often than ``y``: Fisher's exact test, one-sided both ways.

  The estimate is the difference of fit rates :math:`\hat p_y - \hat p_x` (positive:
  ``x`` fails more often), with a Newcombe (Wilson score) 95% interval. ``greater`` is
  the p-value for "``x`` fails more often". The MDE is the smallest deficit
  :math:`p_y - p_x` that the one-sided test at level ``alpha`` detects with ``power``
  when ``y``'s true rate is its observed one (exact power over both binomials).
  """
  from scipy import stats as sp_stats

  nan = math.nan
  if n_x < 1 or n_y < 1:
    return Directional((n_x, n_y), nan, (nan, nan), nan, nan, nan, nan, nan, nan)
  px, py = fit_x / n_x, fit_y / n_y
  fails_more = fisher_less(fit_x, n_x, fit_y, n_y)
  fails_less = fisher_less(fit_y, n_y, fit_x, n_x)
  lx, hx = _wilson(fit_x, n_x)
  ly, hy = _wilson(fit_y, n_y)
  d = py - px
  ci = (
    d - math.sqrt((py - ly) ** 2 + (hx - px) ** 2),
    d + math.sqrt((hy - py) ** 2 + (px - lx) ** 2),
  )
  # Exact power of the one-sided test at (p_x, p_y): the p-values of every table, once.
  reject = np.array(
    [[fisher_less(a, n_x, b, n_y) < alpha for b in range(n_y + 1)] for a in range(n_x + 1)]
  )
  wy = sp_stats.binom.pmf(np.arange(n_y + 1), n_y, py)
  mde = nan
  for q in np.linspace(py, 0.0, 201):
    wx = sp_stats.binom.pmf(np.arange(n_x + 1), n_x, q)
    if float(wx @ reject @ wy) >= power:
      mde = float(py - q)
      break
  min_p = fisher_less(0, n_x, n_y, n_y)
  return Directional((n_x, n_y), d, ci, d, fails_more, fails_less, nan, min_p, mde)


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return centre - half, centre + half
