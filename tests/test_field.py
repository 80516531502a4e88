"""The field study (issue 16): the field map's points on synthetic results, and the smoke
reproduction end to end through ``experiments.reproduce``."""

import json
import math
import os
import subprocess
import sys

from credit.analysis import field_map
from credit.analysis import fit as fit_lib

import numpy as np

STEPS = (0, 10, 20)
FIT = fit_lib.FitCriterion("train_acc", 0.95)
TASK = "delayed_match_to_sample"  # the smoke reproduction's task


def _rows(task, rule, seed, acc, align, lam, gap, diverged_at=None):
  """One run's rows: per step the training score, ``align_cos``, λ_max and gap."""
  out = []
  for k, step in enumerate(STEPS):
    bad = diverged_at is not None and k >= diverged_at
    out.append(
      {
        "task": task,
        "rule": rule,
        "learning_rate": 0.01,
        "seed": seed,
        "step": step,
        "diverged": bad,
        "train_acc": math.nan if bad else acc[k],
        "train_loss": math.nan if bad else 1.0 - acc[k],
        "gap_acc": math.nan if bad else gap[k],
        "align_cos": math.nan if rule == "bptt" else align[k],
        "lambda_max": lam[k],
      }
    )
  return out


def test_field_map_places_each_rule_at_its_mean_over_runs_at_matched_fit_or_end():
  rng = np.random.default_rng(0)
  fits = (0.5, 0.97, 0.99)  # first fit at step 10
  stalls = (0.5, 0.8, 0.9)  # never fits
  runs = {}  # (rule, seed) -> (acc, align, lam, gap)
  rows = []
  for rule, acc in (("bptt", fits), ("eprop", fits), ("uoro", stalls)):
    for seed in range(4):
      align, lam, gap = rng.uniform(-0.2, 0.9, 3), rng.uniform(1, 50, 3), rng.normal(0, 0.1, 3)
      diverged_at = 2 if (rule == "uoro" and seed == 3) else None  # left out
      runs[(rule, seed)] = (acc, align, lam, gap, diverged_at)
      rows += _rows("t", rule, seed, acc, align, lam, gap, diverged_at)
  # A second task where eprop fits in one seed only: that seed alone, at its first fit.
  rows2 = _rows("u", "bptt", 0, fits, (0, 0, 0), (2.0, 3.0, 4.0), (0.1, 0.2, 0.3))
  rows2 += _rows("u", "eprop", 0, stalls, (0.1, 0.2, 0.3), (5.0, 6.0, 7.0), (0.0, 0.0, 0.0))
  rows2 += _rows("u", "eprop", 1, fits, (0.4, 0.6, 0.9), (8.0, 9.0, 10.0), (0.5, 0.6, 0.7))

  fig, points = field_map.field_map_plot({"t": rows, "u": rows2}, {"t": FIT, "u": FIT})
  assert fig is not None and len(fig.axes) >= 2  # one panel per task (and its colour bar)
  t = points["t"]
  assert list(t) == ["bptt", "eprop", "uoro"]
  # eprop and bptt: at step 10 (index 1), alignment averaged over steps 0 and 10.
  for rule in ("bptt", "eprop"):
    vals = [runs[(rule, s)] for s in range(4)]
    assert t[rule]["where"] == "matched" and t[rule]["n"] == 4
    expected_align = 1.0 if rule == "bptt" else np.mean([v[1][:2].mean() for v in vals])
    np.testing.assert_allclose(t[rule]["align"], expected_align, rtol=1e-12)
    np.testing.assert_allclose(t[rule]["lambda"], np.mean([v[2][1] for v in vals]), rtol=1e-12)
    np.testing.assert_allclose(t[rule]["gap"], np.mean([v[3][1] for v in vals]), rtol=1e-12)
    assert t[rule]["train"] == fits[1]
  # uoro never fits: at the end (step 20), the diverged seed left out.
  vals = [runs[("uoro", s)] for s in range(3)]
  assert t["uoro"]["where"] == "end" and t["uoro"]["n"] == 3 and t["uoro"]["diverged"] == 1
  np.testing.assert_allclose(t["uoro"]["align"], np.mean([v[1].mean() for v in vals]))
  np.testing.assert_allclose(t["uoro"]["lambda"], np.mean([v[2][2] for v in vals]))
  np.testing.assert_allclose(t["uoro"]["gap"], np.mean([v[3][2] for v in vals]))
  assert t["uoro"]["train"] == stalls[2]
  # The error bars are bootstrap intervals around the mean, within the runs' range.
  lam = [v[2][2] for v in vals]
  low, high = t["uoro"]["lambda_ci"]
  assert min(lam) <= low <= t["uoro"]["lambda"] <= high <= max(lam)
  u = points["u"]
  assert u["eprop"]["where"] == "matched" and u["eprop"]["n"] == 1
  assert (u["eprop"]["align"], u["eprop"]["lambda"], u["eprop"]["gap"]) == (0.5, 9.0, 0.6)
  assert all(math.isnan(x) for x in u["eprop"]["lambda_ci"])  # one run: no interval


def test_field_map_is_not_drawn_without_alignment():
  rows = _rows("t", "bptt", 0, (0.5, 0.97, 0.99), (0, 0, 0), (1.0, 2.0, 3.0), (0, 0, 0))
  assert field_map.field_map_plot({"t": rows}, {"t": FIT}) == (None, {})


def test_field_smoke_reproduction_writes_the_field_map(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  work = tmp_path / "field"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.reproduce",
      "--config=configs/reproduce/field.py:smoke",
      f"--workdir={work}",
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=1200,  # a guard: on 2 idle cores the run takes well under a minute
    check=False,
    env={**os.environ, "PYTHONPATH": repo},
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert (work / "figures" / "field_map.png").stat().st_size > 0
  points = json.loads((work / "figures" / "field_map.json").read_text())
  task = points[TASK]
  assert set(task) == {"bptt", "r_kf_rtrl"}
  for rule, p in task.items():
    assert p["n"] >= 1 and p["lambda"] > 0
    assert p["align"] == 1.0 if rule == "bptt" else -1.0 <= p["align"] <= 1.0
  report = (work / "REPORT.md").read_text()
  assert "figures/field_map.png" in report
  for rule, p in task.items():  # the report's table of the points, read from the json
    at = "matched fit" if p["where"] == "matched" else "end"
    row = f"| {TASK} | {rule} | {at} | {p['n']} ({p['diverged']}) | "
    assert any(line.startswith(row) for line in report.splitlines()), row
