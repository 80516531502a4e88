"""The five verdicts (issue 23): each against scipy on samples where the answer is known; the
chance-proximity rule; direction from the rank statistic; Fisher's test; the declared protocol."""

import json
import math

from credit.analysis import inference, stats
from credit.errors import ConfigError, UnknownFieldError
from credit.reproduction import claims as claims_lib
from credit.reproduction import document, numbers, previous, protocol
from credit.training import outputs

import numpy as np
import pytest
from scipy import stats as sp_stats

P = protocol.as_dict(protocol.default())


def _candidate(x, y, margin=0.1, claimed="greater", key="r", kind="shift"):
  return claims_lib.Candidate(
    "worse_gap", "t", key, "window", kind, claimed, (x, y), margin, f"±{margin}", "", {}
  )


# ------------------------------------------------------------------ the tests themselves


def test_rank_shift_agrees_with_scipy_one_sided_tests_and_tost():
  rng = np.random.default_rng(0)
  x, y = rng.normal(0.3, 1.0, 17), rng.normal(0.0, 1.0, 23)
  d = inference.rank_shift(x, y, margin=0.25)
  assert d.greater == pytest.approx(sp_stats.mannwhitneyu(x, y, alternative="greater").pvalue)
  assert d.less == pytest.approx(sp_stats.mannwhitneyu(x, y, alternative="less").pvalue)
  tost = max(
    sp_stats.mannwhitneyu(x - 0.25, y, alternative="less").pvalue,
    sp_stats.mannwhitneyu(x + 0.25, y, alternative="greater").pvalue,
  )
  assert d.equivalence == pytest.approx(tost)
  assert d.estimate == pytest.approx(np.median([a - b for a in x for b in y]), rel=1e-14)
  assert d.ci[0] < d.estimate < d.ci[1]
  assert d.statistic == pytest.approx(stats.cliffs_delta(x, y))


def test_smallest_p_is_that_of_complete_separation():
  for n_x, n_y in ((2, 2), (3, 5), (4, 4), (3, 20)):
    assert inference.min_mann_whitney_p(n_x, n_y) == pytest.approx(1 / math.comb(n_x + n_y, n_x))


def test_shift_mde_has_the_declared_power():
  """At a true shift equal to the MDE, the one-sided rank test rejects in about 80% of draws."""
  n, alpha = 20, 0.05 / 4
  unit = (np.arange(n) - (n - 1) / 2) / np.std(np.arange(n), ddof=1)  # sd exactly 1
  mde = inference.shift_mde(unit, unit, alpha)
  rng = np.random.default_rng(1)
  hits = [
    sp_stats.mannwhitneyu(rng.normal(mde, 1, n), rng.normal(0, 1, n), alternative="greater").pvalue
    < alpha
    for _ in range(2000)
  ]
  assert np.mean(hits) == pytest.approx(0.8, abs=0.04)


def test_one_sided_spread_and_partial_correlation_halve_their_two_sided_tests():
  rng = np.random.default_rng(2)
  x, y = rng.normal(0, 3, 15), rng.normal(0, 1, 18)
  d = inference.spread(x, y)
  levene = sp_stats.levene(x, y, center="median").pvalue
  assert d.greater == pytest.approx(levene / 2, rel=1e-10) and d.less > 0.5
  g = np.repeat(["a", "b"], 20)
  u = rng.normal(size=40)
  v = 0.6 * u + rng.normal(size=40)
  c = inference.partial_correlation(u, v, list(g), margin=0.2)
  two = stats.rank_partial_correlation(u, v, list(g)).p
  assert c.greater == pytest.approx(two / 2, rel=1e-10) and c.estimate > 0


def test_fisher_fit_rates_agree_with_scipy_and_their_mde_has_the_declared_power():
  d = inference.fit_rates(3, 20, 19, 20, alpha=0.01)
  table = [[3, 17], [19, 1]]
  assert d.greater == pytest.approx(sp_stats.fisher_exact(table, alternative="less").pvalue)
  assert d.less == pytest.approx(sp_stats.fisher_exact(table, alternative="greater").pvalue)
  assert d.estimate == pytest.approx(19 / 20 - 3 / 20)
  # Monte Carlo power at the MDE (BPTT's rate its observed 0.95): at least 0.8.
  rng = np.random.default_rng(3)
  q = 0.95 - d.mde
  hits = [
    inference.fisher_less(rng.binomial(20, q), 20, rng.binomial(20, 0.95), 20) < 0.01
    for _ in range(1500)
  ]
  assert np.mean(hits) >= 0.8 - 0.03


# ------------------------------------------------------------------ the verdicts


def test_each_verdict_on_samples_where_the_answer_is_known():
  rng = np.random.default_rng(4)
  family = [
    _candidate(rng.normal(1.0, 0.3, 20), rng.normal(0.0, 0.3, 20), key="effect"),
    _candidate(rng.normal(-1.0, 0.3, 20), rng.normal(0.0, 0.3, 20), key="opposite"),
    _candidate(rng.normal(0.0, 0.3, 400), rng.normal(0.0, 0.3, 400), key="equal"),
    _candidate(rng.normal(0.1, 0.3, 12), rng.normal(0.0, 0.3, 12), key="small"),
    _candidate([1.0, 2.0], [0.0, 0.5], key="tiny"),
  ]
  judged = {j.key: j for j in claims_lib.judge_family(family, P)}
  want = {
    "effect": "supported",
    "opposite": "contradicted",
    "equal": "equivalent",
    "small": "inconclusive",
    "tiny": "not tested",
  }
  assert {k: j.verdict for k, j in judged.items()} == want
  # Holm within the family of the four testable contrasts, on scipy's one-sided p-values.
  tested = family[:4]
  greater = [sp_stats.mannwhitneyu(*c.samples, alternative="greater").pvalue for c in tested]
  for c, p in zip(tested, stats.holm(greater), strict=True):
    assert judged[c.key].p_support == pytest.approx(p)
  assert judged["tiny"].reason.startswith("fewer runs than can reach significance")
  assert "smallest possible p 0.17 × 5 contrasts" in judged["tiny"].reason
  assert math.isfinite(judged["small"].mde) and judged["small"].level == pytest.approx(0.05 / 4)
  assert "MDE" in claims_lib.line(judged["small"]._asdict())


def test_direction_comes_from_the_rank_test_not_the_means():
  """Most of x lies below y, one outlier drags x's mean above: the rank test says *less*."""
  y = np.linspace(1.0, 2.0, 15)
  x = np.concatenate([np.linspace(0.0, 0.9, 14), [200.0]])
  assert x.mean() > y.mean()
  (j,) = claims_lib.judge_family([_candidate(x, y)], P)
  assert j.verdict == "contradicted" and j.estimate < 0
  assert j.p_contradict == pytest.approx(sp_stats.mannwhitneyu(x, y, alternative="less").pvalue)


def test_a_contrast_that_cannot_reach_significance_leaves_the_family():
  """3 vs 3 can reach p 0.05 alone (min p 0.05) but not among 2 contrasts; the other then
  stands alone and is judged at the full level."""
  rng = np.random.default_rng(5)
  small = _candidate([3.0, 4.0, 5.0], [0.0, 1.0, 2.0], key="small")
  big = _candidate(rng.normal(0.5, 1, 30), rng.normal(0, 1, 30), key="big")
  judged = {j.key: j for j in claims_lib.judge_family([small, big], P)}
  assert judged["small"].verdict == "not tested"
  assert judged["big"].level == pytest.approx(0.05)


# ------------------------------------------------------------------ through a report


def _rows(task, rules, steps=(0, 100, 200, 300), seeds=10, seed=0):
  """Per rule ``(gap shift, final train_acc, final train loss)``: each run's score rises to its
  final value at step 200; a seed-level factor z spreads the gap."""
  rng = np.random.default_rng(seed)
  out = []
  for rule, (shift, acc, loss) in rules.items():
    for s in range(seeds):
      z = rng.normal()
      for k, step in enumerate(steps):
        a = 0.5 + (acc - 0.5) * min(k, 2) / 2
        gap = (0.05 + shift + 0.01 * z) * min(k, 2) / 2
        out.append(
          dict(
            task=task,
            rule=rule,
            learning_rate=0.01,
            seed=s,
            step=step,
            diverged=False,
            gap_acc=gap,
            gap_loss=2 * gap,
            train_acc=a,
            test_acc=a - gap,
            test_clean_acc=a - 0.01,
            train_loss=0.70 - (0.70 - loss) * min(k, 2) / 2,
            lambda_max=10.0 + z + k,
          )
        )
  return out


def _sweep(folder, rows, task):
  folder.mkdir(parents=True)
  outputs.write_csv(str(folder / "results.csv"), rows)
  sweep = {
    "tasks": {task: {"optimizer": {"name": "sgd", "learning_rate": 0.01}}},
    "fit_criteria": {task: {"metric": "train_acc", "at_least": 0.95}},
  }
  (folder / "sweep.json").write_text(json.dumps(sweep))


def test_a_rule_at_chance_is_not_tested_and_a_trained_one_is(tmp_path):
  """delayed match (chance 0.5, ln 2): a rule stuck at loss 0.69 is compared at a matched loss
  within 10% of chance, so not tested; at loss 0.4 it is tested."""
  task = "delayed_match_to_sample"
  stuck = {"bptt": (0.0, 0.99, 0.05), "eprop": (0.2, 0.52, 0.69)}
  _sweep(tmp_path / "a" / task / "base", _rows(task, stuck), task)
  t = numbers.build(str(tmp_path / "a"))[task]
  assert t["matched_loss"]["target"] == pytest.approx(0.69)
  (j,) = claims_lib.judge({task: t}, P)["worse_gap"]
  assert j.verdict == "not tested" and "within 10% of chance (0.693)" in j.reason
  learning = {"bptt": (0.0, 0.99, 0.05), "eprop": (0.2, 0.9, 0.4)}
  _sweep(tmp_path / "b" / task / "base", _rows(task, learning), task)
  t = numbers.build(str(tmp_path / "b"))[task]
  (j,) = claims_lib.judge({task: t}, P)["worse_gap"]
  assert j.verdict == "supported" and j.where == "at train loss 0.4"
  # The fit row counts the same runs: eprop fits in 0 of 10, BPTT in 10 of 10.
  (f,) = claims_lib.judge({task: t}, P)["fit"]
  assert f.verdict == "supported" and f.n == "n 10 vs 10"


def test_no_contrast_is_tested_when_the_reference_does_not_fit(tmp_path):
  task = "seq_mnist"
  rules = {"bptt": (0.0, 0.9, 0.4), "eprop": (0.2, 0.99, 0.05)}
  _sweep(tmp_path / task / "base", _rows(task, rules), task)
  t = numbers.build(str(tmp_path))[task]
  judged = claims_lib.judge({task: t}, P)
  for claim in ("worse_gap", "sharper", "fit"):
    (j,) = judged[claim]
    assert j.verdict == "not tested" and "BPTT fits in 0 of 10 runs" in j.reason


def test_gap_units_are_derived_per_evaluation():
  rows = [dict(train_acc=0.9, test_acc=0.7, test_clean_acc=0.85)]
  (r,) = numbers.derived_gaps(rows, 0.5)
  assert r["gap_norm"] == pytest.approx(0.2 / 0.4) and r["gap_clean"] == pytest.approx(0.05)
  assert math.isnan(numbers.derived_gaps([dict(train_acc=0.4, test_acc=0.3)], 0.5)[0]["gap_norm"])
  # Single-factor shift splits get their own gap; tasks without them get none.
  (r,) = numbers.derived_gaps([dict(train_acc=0.9, test_acc=0.7, test_delay_acc=0.8)], 0.5)
  assert r["gap_delay"] == pytest.approx(0.1) and "gap_noise" not in r


def test_the_report_reads_its_declared_protocol_and_says_what_moved(tmp_path):
  task = "pattern_generation"
  # eprop: a large *negative* gap shift; the old rule called it "not reproduced".
  rules = {"bptt": (0.0, 0.99, 0.05), "eprop": (-0.04, 0.99, 0.05)}
  _sweep(tmp_path / task / "base", _rows(task, rules, seeds=20), task)
  p = protocol.default()
  p.gap_margin.gap_acc.absolute = 0.5  # wide: the opposite effect is still contradicted
  protocol.declare(str(tmp_path), p)
  text = open(document.write_report(str(tmp_path))).read()
  assert "declared in `claims.json` beside the results" in text
  table = [line for line in text.split("## Claims × tasks")[1].splitlines() if line.startswith("|")]
  widths = {line.replace("\\|", "").count("|") for line in table[:9]}
  assert widths == {3}, "a cell's text broke the claims table"
  assert "TOST ±0.5 (max of 0.5 and 0.25" not in text  # contradicted: no TOST shown
  nums = json.load(open(tmp_path / "report.json"))
  (j,) = nums[task]["verdicts"]["worse_gap"]
  assert j["verdict"] == "contradicted" and "±0.5" in j["margin"]
  moved = previous.moves(nums)
  assert moved[previous.DOES_NOT]["contradicted"] >= 1
  # A changed protocol cannot be declared on the same workdir.
  p.alpha = 0.1
  with pytest.raises(ConfigError, match="declares another claims protocol"):
    protocol.declare(str(tmp_path), p)


def test_protocol_validation_names_the_bad_field():
  bad = {
    "headline": ("median", ConfigError, "claims.headline"),
    "alpha": (1.5, ConfigError, "claims.alpha"),
    "lambda_margin": (0.9, ConfigError, "claims.lambda_margin"),
    "primary": (("worse_gap", "nope"), ConfigError, "unknown claims"),
    "min_reference_fits": (1, ConfigError, "min_reference_fits"),
  }
  for field, (value, error, match) in bad.items():
    p = protocol.default()
    p[field] = value
    with pytest.raises(error, match=match):
      protocol.validate(p)
  p = protocol.default()
  p.gap_unit = {"default": "gap_acc", "seq_mnist": "gap_raw"}
  with pytest.raises(ConfigError, match="claims.gap_unit.seq_mnist"):
    protocol.validate(p)
  with pytest.raises(UnknownFieldError, match="unknown fields"):
    protocol.validate({**protocol.as_dict(protocol.default()), "beta": 1})


def test_operating_points_average_the_window_after_fit_and_the_last_quarter():
  rows = [
    dict(
      task="t",
      rule="r",
      learning_rate=0.1,
      seed=0,
      step=step,
      diverged=False,
      train_acc=acc,
      gap_acc=gap,
      train_loss=1 - acc,
      lambda_max=lam,
    )
    for step, acc, gap, lam in (
      (0, 0.5, 0.0, 1.0),
      (100, 0.96, 0.1, 2.0),
      (200, 0.97, 0.3, math.nan),
      (300, 0.98, 0.5, 8.0),
    )
  ]
  fit = numbers.fit_lib.FitCriterion("train_acc", 0.95)
  (rec,) = numbers.run_records(rows, fit, "lambda_max", window=0.5, last=0.25)
  # First fit at step 100; window [100, 250]: steps 100 and 200, λ at 200 is 100's (sparse).
  assert rec["matched"]["gap_acc"] == pytest.approx(0.1)
  assert rec["window"]["gap_acc"] == pytest.approx(0.2) and rec["window"]["evaluations"] == 2
  assert rec["window"]["lambda"] == pytest.approx(2.0)
  # Last quarter of the 300-step budget: [225, 300], step 300 only.
  assert rec["last"]["gap_acc"] == pytest.approx(0.5) and rec["last"]["lambda"] == pytest.approx(8)
  # A run that never fits has no operating point.
  (never,) = numbers.run_records(rows, numbers.fit_lib.FitCriterion("train_acc", 0.99), None)
  assert never["matched"] is never["window"] is never["last"] is None
