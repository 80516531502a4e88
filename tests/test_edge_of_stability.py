"""Where a sharpness series stops rising, and the ratios there (credit.analysis.edge_of_stability).

Synthetic series with a known plateau step, a series that keeps rising, a leading
fall, and a probe measured every few evaluations (NaN in between).
"""

from __future__ import annotations

import math

from credit.analysis import edge_of_stability as eos
from credit.analysis import stats

import numpy as np
import pytest
from scipy import stats as sp_stats


def _rise_then_plateau(start=9, level=100.0, n=40, noise=0.03, seed=0):
  """Linear rise to ``level`` reached at index ``start``, then ``level`` with ±noise relative."""
  rng = np.random.default_rng(seed)
  k = np.arange(n)
  x = np.where(k < start, level * (k + 1) / (start + 1), level)
  x = x * np.where(k > start, 1 + rng.uniform(-noise, noise, n), 1.0)
  return 50.0 * k, x  # evaluations every 50 steps


def _brute_force(values, tolerance, window, min_after):
  """The definition, evaluated point by point (no cumulative maxima)."""
  s = eos.running_median(values, window)
  n = len(s)
  i0 = next((i for i in range(n - 1) if s[i + 1] >= s[i] - tolerance * abs(s[i])), n - 1)
  i = next(
    i for i in range(i0, n) if all(s[j] <= s[i] + tolerance * abs(s[i]) for j in range(i + 1, n))
  )
  return i, n - 1 - i >= min_after


def test_plateau_is_found_at_the_known_step():
  steps, x = _rise_then_plateau(start=9)
  p = eos.plateau(steps, x)
  assert p.found and p.rose
  assert p.step == steps[9] and p.index == 9
  assert p.value == pytest.approx(100.0, rel=0.03)
  # One spike on the plateau (a catapult) neither ends the rise early nor moves the plateau.
  spiked = x.copy()
  spiked[20] = 400.0
  assert eos.plateau(steps, spiked).step == steps[9]
  # Random series: the vectorized search is the definition evaluated point by point.
  rng = np.random.default_rng(3)
  for _ in range(30):
    y = np.exp(np.cumsum(rng.normal(0.05, 0.2, 25)))
    for tol, window in ((0.1, 3), (0.0, 1), (0.3, 5)):
      p = eos.plateau(np.arange(25), y, tolerance=tol, window=window)
      assert (p.index, p.found) == _brute_force(y, tol, window, eos.MIN_AFTER)


def test_a_series_that_keeps_rising_has_no_plateau():
  steps = np.arange(30) * 10.0
  # 5% per evaluation is below the 10% tolerance, yet compounds past it within MIN_AFTER.
  for growth in (1.05, 1.2):
    p = eos.plateau(steps, growth ** np.arange(30))
    assert not p.found and p.rose
    assert (
      eos.at_plateau(
        [
          {"step": s, "lam": v, "r": 1.0}
          for s, v in zip(steps, growth ** np.arange(30), strict=True)
        ],
        "lam",
        ("r",),
      )["found"]
      is False
    )
  # It rises and then stops, but too close to the end to tell.
  x = np.concatenate([1.25 ** np.arange(28), [1.25**27] * 2])
  assert not eos.plateau(np.arange(30), x, min_after=3).found
  p = eos.plateau(np.arange(30), x, min_after=2)
  assert p.found and p.index == 27


def test_a_leading_fall_is_skipped_and_a_series_that_never_rises_is_said_so():
  steps = np.arange(20) * 100.0
  x = np.concatenate([[5000.0, 1500.0, 400.0], 200.0 * (1 + 0.04 * np.sin(np.arange(17)))])
  p = eos.plateau(steps, x)
  assert p.found and not p.rose
  assert p.step == steps[3]  # not step 0, where the initial sharpness trivially "stops"
  # A fall that ends in a rise: the rise is what stops.
  y = np.concatenate([[5000.0, 1000.0, 100.0], np.linspace(100, 300, 8), np.full(10, 300.0)])
  q = eos.plateau(np.arange(21), y)
  assert q.found and q.rose and q.index == 10


def test_sparse_probes_nan_between_measurements():
  steps, x = _rise_then_plateau(start=9, n=41)
  every = 3
  sparse = np.where(np.arange(x.size) % every == 0, x, np.nan)
  p = eos.plateau(steps, sparse)
  measured = ~np.isnan(sparse)
  ref = eos.plateau(steps[measured], x[measured])
  assert p == ref and p.measured == int(measured.sum())
  assert p.step in steps[measured] and p.step >= steps[9]
  # A second probe measured every 4 evaluations is read at its first measurement on the plateau.
  ratio = np.where(np.arange(x.size) % 4 == 0, x / 100.0, np.nan)
  rows = [{"step": s, "lam": v, "ratio": r} for s, v, r in zip(steps, sparse, ratio, strict=True)]
  out = eos.at_plateau(rows[::-1], "lam", ("ratio",))  # order of rows does not matter
  first = next(i for i in range(x.size) if steps[i] >= p.step and i % 4 == 0)
  assert out["step"] == p.step and out["ratio"] == ratio[first]
  on = ratio[(steps >= p.step) & ~np.isnan(ratio)]
  assert out["ratio_plateau"] == pytest.approx(np.median(on), rel=1e-15)
  assert out["series"] == x[np.flatnonzero(steps == p.step)[0]]
  assert eos.value_from(rows, 10_000.0, "ratio") == ratio[~np.isnan(ratio)][-1]  # none after
  # Nothing measured: no plateau, NaN values.
  empty = eos.at_plateau([{"step": 0, "lam": math.nan, "ratio": 1.0}], "lam", ("ratio",))
  assert not empty["found"] and math.isnan(empty["ratio"])


def test_bad_input_is_refused():
  with pytest.raises(ValueError, match="odd"):
    eos.plateau([0, 1, 2], [1.0, 2.0, 3.0], window=2)
  with pytest.raises(ValueError, match="3 steps but 2 values"):
    eos.plateau([0, 1, 2], [1.0, 2.0])
  with pytest.raises(ValueError, match="tolerance"):
    eos.plateau([0, 1], [1.0, 2.0], tolerance=-0.1)


def test_thresholds_and_band():
  assert eos.optimizer_threshold({"name": "sgd"}, 0.01)["value"] == pytest.approx(200.0)
  mom = eos.optimizer_threshold({"name": "momentum", "momentum": 0.9}, 0.01)
  assert mom["value"] == pytest.approx(380.0)
  assert eos.bounded_metric(mom["applies_to"]) == "lambda_max"
  adam = eos.optimizer_threshold({"name": "adam", "b1": 0.9}, 0.001)
  assert adam["value"] == pytest.approx(38_000.0)
  assert eos.bounded_metric(adam["applies_to"]) == "lambda_max_precond"
  assert math.isnan(eos.optimizer_threshold({"name": "lamb"}, 0.01)["value"])
  assert eos.bounded_metric(None) is None
  lo, hi = eos.BAND
  assert eos.band_verdict(0.9, 1.1) == "at the edge"
  assert eos.band_verdict(0.1, 0.5) == "below the edge"
  assert eos.band_verdict(1.3, math.inf) == "above the edge"
  assert eos.band_verdict(0.5, 1.1) == "inconclusive"
  assert eos.band_verdict(math.nan, 1.0) == "n/a"
  assert eos.band_verdict(lo, hi) == "at the edge"


def test_bootstrap_ci_of_the_median_agrees_with_scipy():
  rng = np.random.default_rng(2)
  x = rng.lognormal(0.0, 0.5, 40)
  got = stats.bootstrap_ci(x, resamples=20_000)
  ref = sp_stats.bootstrap(
    (x,),
    np.median,
    method="percentile",
    n_resamples=20_000,
    random_state=np.random.default_rng(7),
  ).confidence_interval
  assert got.estimate == np.median(x)
  width = ref.high - ref.low
  assert abs(got.low - ref.low) < 0.05 * width and abs(got.high - ref.high) < 0.05 * width
  assert math.isnan(stats.bootstrap_ci([math.nan]).estimate)
