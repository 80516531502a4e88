"""The declared learning-rate selection, on constructed pilot rows whose answer is known."""

import json
import math
import os

from credit.analysis import fit as fit_lib
from credit.analysis import lr_selection
from credit.errors import ConfigError
from credit.reproduction import plan as plan_lib
from credit.sweeps import cells as cells_lib
from credit.training import outputs

import pytest

from configs.reproduce import all as repro_all
from configs.reproduce import lr_selection as pilot_config

RATES = (0.01, 0.02, 0.04, 0.08)
STEPS = (0, 100, 200)
FIT = fit_lib.FitCriterion("train_acc", 0.95)


def _run(rule, lr, seed, final_val, *, mid_val=0.6, diverge_at=None, fits=False, test=0.5):
  """One seed's rows: val_acc ``mid_val`` at step 100 and ``final_val`` at the end."""
  rows = []
  for step in STEPS:
    val = {0: 0.5, 100: mid_val, 200: final_val}[step]
    rows.append(
      dict(
        task="t",
        rule=rule,
        learning_rate=lr,
        seed=seed,
        step=step,
        diverged=diverge_at is not None and step >= diverge_at,
        train_acc=0.97 if fits and step == 100 else 0.6,
        val_acc=val,
        val_loss=1.0,
        test_acc=test,
      )
    )
  return rows


def _cell(rule, lr, finals, **kw):
  """Five seeds of one rate; ``finals`` their final val_acc."""
  return [r for seed, v in enumerate(finals) for r in _run(rule, lr, seed, v, **kw)]


def _pilot_rows():
  rows = []
  # a: 0.04 has the best mean of its healthy seeds but one diverged seed: 0.02 wins.
  rows += _cell("a", 0.01, [0.7] * 5)
  rows += _cell("a", 0.02, [0.88, 0.9, 0.92, 0.9, 0.9], fits=True)
  rows += _cell("a", 0.04, [0.99] * 4)
  rows += _run("a", 0.04, 4, 0.99, diverge_at=200)
  # 0.08: best in the middle of training (0.99), poor at the end; the end counts.
  rows += _cell("a", 0.08, [0.6] * 5, mid_val=0.99)
  # b: 0.01 and 0.02 tie within the tolerance (0.800 vs 0.805): the smaller one wins.
  rows += _cell("b", 0.01, [0.8] * 5)
  rows += _cell("b", 0.02, [0.805] * 5)
  rows += _cell("b", 0.04, [0.7] * 5)
  rows += _cell("b", 0.08, [0.6] * 5)
  # c: every rate has a diverged seed; 0.02 has the fewest (1), its other seeds score 0.75.
  for lr, bad in zip(RATES, (2, 1, 3, 5), strict=True):
    for seed in range(5):
      rows += _run(
        "c", lr, seed, 0.75 if seed >= bad else 0.99, diverge_at=200 if seed < bad else None
      )
  # d: the largest rate scores best: the choice carries the upper-edge flag.
  for lr, v in zip(RATES, (0.6, 0.7, 0.8, 0.9), strict=True):
    rows += _cell("d", lr, [v] * 5)
  return rows


def test_chosen_rates_follow_the_declared_rules():
  chosen = lr_selection.select(_pilot_rows(), FIT)["t"]
  assert {r: c["learning_rate"] for r, c in chosen.items()} == {
    "a": 0.02,
    "b": 0.01,
    "c": 0.02,
    "d": 0.08,
  }
  assert chosen["a"]["grid"] == list(RATES)
  # b's smallest rate is chosen by a tie: no edge flag (a larger rate scores as well).
  assert [c["grid_edge"] for c in chosen.values()] == ["", "", "", "upper"]
  assert [c["no_stable_rate"] for c in chosen.values()] == [False, False, True, False]
  assert chosen["b"]["tied_rates"] == [0.01, 0.02] and chosen["a"]["tied_rates"] == [0.02]
  a = {r["learning_rate"]: r for r in chosen["a"]["rates"]}
  assert a[0.04]["diverged"] == 1 and a[0.04]["n"] == 4 and a[0.04]["runs"] == 5
  assert a[0.02]["score_mean"] == pytest.approx(0.9)
  assert a[0.02]["score_sd"] == pytest.approx(math.sqrt(0.0008 / 4))
  assert a[0.02]["fit"] == 5 and a[0.01]["fit"] == 0
  assert a[0.08]["score_mean"] == pytest.approx(0.6)  # the end of the budget, not the best
  # The diverged seeds' last healthy scores (0.99) are left out of the mean.
  c = {r["learning_rate"]: r for r in chosen["c"]["rates"]}
  assert c[0.02]["score_mean"] == pytest.approx(0.75) and c[0.02]["n"] == 4
  assert c[0.08]["n"] == 0 and math.isnan(c[0.08]["score_mean"])


def test_test_set_columns_never_change_the_choice():
  rows = _pilot_rows()
  base = lr_selection.select(rows, FIT)
  # The test score rewards each rule's worst rate, then every rate in turn: no change.
  for favoured in RATES:
    shifted = [dict(r, test_acc=1.0 if r["learning_rate"] == favoured else 0.0) for r in rows]
    assert lr_selection.select(shifted, FIT) == base
  with pytest.raises(ValueError, match="validation metric"):
    lr_selection.select(rows, FIT, score="test_acc")


def test_tolerance_zero_takes_the_strict_best():
  chosen = lr_selection.select(_pilot_rows(), FIT, tie_tolerance=0.0)["t"]
  assert chosen["b"]["learning_rate"] == 0.02
  # A smallest rate better than all others by more than the tolerance is flagged.
  rows = [r for r in _pilot_rows() if r["rule"] == "d"]
  rows = [dict(r, val_acc=1.5 - r["val_acc"]) if r["step"] == 200 else r for r in rows]
  flagged = lr_selection.select(rows)["t"]["d"]
  assert flagged["learning_rate"] == 0.01 and flagged["grid_edge"] == "lower"
  with pytest.raises(ValueError, match="tie_tolerance"):
    lr_selection.choose(lr_selection.rate_records(_pilot_rows())[:1], tie_tolerance=-1)


def test_a_non_finite_validation_loss_marks_the_seed_diverged():
  rows = _cell("a", 0.01, [0.7] * 5) + _cell("a", 0.02, [0.9] * 5)
  rows[-1] = dict(rows[-1], val_loss=math.nan)  # seed 4 of 0.02 at its last evaluation
  chosen = lr_selection.select(rows)["t"]["a"]
  assert chosen["learning_rate"] == 0.01
  assert chosen["rates"][1]["diverged"] == 1


def _write_pilot(folder, rows):
  os.makedirs(folder)
  outputs.write_csv(os.path.join(folder, "results.csv"), rows)
  outputs.write_csv(os.path.join(folder, "summary.csv"), [dict(task="t")])
  sweep = dict(
    name="pilot",
    learning_rates=list(RATES),
    tasks=dict(t=dict(seed=100, num_steps=200)),
    fit_criteria=dict(t=dict(metric="train_acc", at_least=0.95)),
  )
  outputs.write_json(os.path.join(folder, "sweep.json"), sweep)
  for cell in ("t-a-lr0.01", "t-a-lr0.02"):
    os.makedirs(os.path.join(folder, "cells", cell, "checkpoints", "200"))
    for name in ("config.json", "run_info.json", "summary.json", "metrics.csv"):
      with open(os.path.join(folder, "cells", cell, name), "w") as f:
        f.write("{}")
  os.makedirs(os.path.join(folder, "cells", "t-a-lr0.04"))  # unfinished: no summary.json
  with open(os.path.join(folder, "cells", "t-a-lr0.04", "config.json"), "w") as f:
    f.write("{}")


def test_write_selection_keeps_results_files_only_and_reads_back(tmp_path):
  pilot, out = str(tmp_path / "pilot"), str(tmp_path / "lr" / "t")
  _write_pilot(pilot, _pilot_rows())
  record = lr_selection.write_selection(pilot, out)
  with open(os.path.join(out, "selection.json")) as f:
    stored = json.load(f)
  assert stored["rules"]["a"]["learning_rate"] == 0.02
  assert stored["grid"] == list(RATES) and stored["num_seeds"] == 5 and stored["base_seed"] == 100
  assert stored["fit_criterion"] == dict(metric="train_acc", at_least=0.95)
  assert stored["rules"]["a"]["rates"][1]["fit"] == 5
  assert record["rules"]["b"]["learning_rate"] == 0.01
  assert sorted(os.listdir(out)) == ["pilot", "selection.json", "selection.md"]
  copied = os.path.join(out, "pilot")
  assert sorted(os.listdir(copied)) == ["cells", "results.csv", "summary.csv", "sweep.json"]
  assert sorted(os.listdir(os.path.join(copied, "cells"))) == ["t-a-lr0.01", "t-a-lr0.02"]
  assert sorted(os.listdir(os.path.join(copied, "cells", "t-a-lr0.01"))) == [
    "config.json",
    "run_info.json",
    "summary.json",
  ]
  table = open(os.path.join(out, "selection.md")).read()
  assert "| a | **0.02** | 0.900 ± 0.014 | 5/5 | 0 | 5 |" in table
  assert "| a | 0.04 | 0.990 ± 0.000 | 0/5 | 1 | 5 |" in table
  assert "d: chosen rate at the grid's upper edge" in table
  assert "b: tied within the tolerance: 0.01, 0.02 (the smallest is chosen)" in table
  assert lr_selection.chosen_rates(out) == ("t", {"a": 0.02, "b": 0.01, "c": 0.02, "d": 0.08})
  combined = lr_selection.combined_table(str(tmp_path / "lr"))
  assert "| t | a | 0.01, 0.02, 0.04, 0.08 | 0.02 | 0.900 ± 0.014 | 5/5 | 0/5 |  |" in combined
  assert (
    "| t | b | 0.01, 0.02, 0.04, 0.08 | 0.01 | 0.800 ± 0.000 | 0/5 | 0/5 | "
    "tied with 0.02 |" in combined
  )
  assert "| t | c | 0.01, 0.02, 0.04, 0.08 | 0.02 | 0.750 ± 0.000 | 0/5 | 1/5 | no rate" in combined
  assert (
    "| t | d | 0.01, 0.02, 0.04, 0.08 | 0.08 | 0.900 ± 0.000 | 0/5 | 0/5 | at the grid's upper"
    in combined
  )


def _selection(folder, task, rates):
  os.makedirs(os.path.join(folder, task))
  record = dict(task=task, rules={r: dict(learning_rate=lr) for r, lr in rates.items()})
  outputs.write_json(os.path.join(folder, task, "selection.json"), record)


def test_plan_runs_each_rule_at_its_chosen_rate(tmp_path):
  task = "delayed_match_to_sample"
  repro = repro_all.get_config("smoke")
  base_rate = repro.tasks[task].tasks[task].optimizer.learning_rate
  folder = str(tmp_path / "lr_selection")
  _selection(folder, task, {"eprop": 0.04, "mdgl": 0.005, "rflo": 0.1})  # rflo: not swept
  repro.lr_selection_dir = folder
  planned = {v: s for _, v, s in plan_lib.plan(repro, [task], ["lr_x2"])}
  base = {c.rule: c for c in cells_lib.expand(planned["base"])}
  assert {r: c.learning_rate for r, c in base.items()} == {
    "bptt": base_rate,
    "eprop": 0.04,
    "eprop_random": base_rate,
    "mdgl": 0.005,
  }
  assert base["eprop"].config.optimizer.learning_rate == 0.04
  assert base["eprop"].id == f"{task}-eprop-lr0.04"
  remedy = {c.rule: c for c in cells_lib.expand(planned["lr_x2"])}
  assert remedy["eprop"].learning_rate == 0.04 and remedy["mdgl"].learning_rate == 0.005
  assert remedy["eprop"].config.remedies.lr_scale == 2.0
  # No selection folder: the sweep's own rate everywhere.
  plain = repro_all.get_config("smoke")
  (_, _, sweep), *_ = plan_lib.plan(plain, [task], [])
  assert {c.learning_rate for c in cells_lib.expand(sweep)} == {base_rate}


def test_plan_refuses_a_selection_of_another_task(tmp_path):
  task = "delayed_match_to_sample"
  folder = str(tmp_path / "lr_selection")
  _selection(folder, task, {"eprop": 0.04})
  os.replace(os.path.join(folder, task, "selection.json"), os.path.join(folder, "x.json"))
  _selection(str(tmp_path / "other"), "pattern_generation", {"eprop": 0.04})
  os.rmdir(os.path.join(folder, task))
  os.rename(str(tmp_path / "other" / "pattern_generation"), os.path.join(folder, task))
  repro = repro_all.get_config("smoke")
  repro.lr_selection_dir = folder
  with pytest.raises(ConfigError, match="selection of task 'pattern_generation'"):
    plan_lib.plan(repro, [task], [])
  repro.lr_selection_dir = str(tmp_path / "missing")
  with pytest.raises(ConfigError, match="is not a folder"):
    plan_lib.plan(repro, [task], [])


def test_sweep_validates_per_rule_rates():
  sweep = pilot_config.get_config("delayed_match_to_sample,smoke")
  sweep.task_rule_learning_rates = {"delayed_match_to_sample": {"rflo": (0.01,)}}
  with pytest.raises(ConfigError, match="names rules not in sweep.rules"):
    cells_lib.expand(sweep, validate=False)
  sweep.task_rule_learning_rates = {"delayed_match_to_sample": {"eprop": (0.0,)}}
  with pytest.raises(ConfigError, match="finite numbers > 0"):
    cells_lib.expand(sweep, validate=False)


def test_pilot_config_has_the_base_budget_fresh_seeds_and_the_grid():
  for task in ("delayed_match_to_sample", "pattern_generation"):
    base = repro_all.task_sweep(task)
    pilot = pilot_config.get_config(task)
    run, base_run = pilot.tasks[task], base.tasks[task]
    rate = base_run.optimizer.learning_rate
    assert pilot.learning_rates == tuple(pytest.approx(f * rate) for f in (0.5, 1, 2, 4))
    assert tuple(pilot.rules) == tuple(base.rules)
    assert run.num_steps == base_run.num_steps and run.eval_every == base_run.eval_every
    assert run.num_seeds == 5 and run.seed == 100 and base_run.seed == 0
    assert run.theory.every == 0
    assert pilot.fit_criteria.to_dict() == base.fit_criteria.to_dict()
    cells = cells_lib.expand(pilot)
    assert len(cells) == 4 * len(base.rules)


def test_grid_extension_cells_are_the_pilot_cells_at_further_rates():
  task = "delayed_match_to_sample"
  pilot = {(c.rule): c for c in cells_lib.expand(pilot_config.get_config(task))}
  extension = cells_lib.expand(pilot_config.get_config(f"{task},extend"))
  rate = pilot_config.pilot_sweep(task).tasks[task].optimizer.learning_rate
  want = sorted((r, f * rate) for r, fs in pilot_config.EXTENSIONS[task].items() for f in fs)
  got = sorted((c.rule, c.learning_rate) for c in extension)
  assert [r for r, _ in got] == [r for r, _ in want]
  assert [lr for _, lr in got] == pytest.approx([lr for _, lr in want])
  for cell in extension:  # the same run config as the pilot's cell of that rule but the rate
    same = pilot[cell.rule].config.to_dict()
    same["optimizer"]["learning_rate"] = cell.learning_rate
    assert cell.config.to_dict() == same, cell.id


def test_a_grid_and_its_extension_are_chosen_from_together(tmp_path):
  rows = _pilot_rows()
  first = [r for r in rows if r["learning_rate"] < 0.08]
  _write_pilot(str(tmp_path / "grid"), first)
  _write_pilot(str(tmp_path / "more"), [r for r in rows if r["learning_rate"] == 0.08])
  alone = lr_selection.write_selection(str(tmp_path / "grid"), str(tmp_path / "alone"))
  assert alone["rules"]["d"]["learning_rate"] == 0.04  # the first grid's edge
  assert alone["rules"]["d"]["grid_edge"] == "upper"
  out = str(tmp_path / "both")
  both = lr_selection.write_selection([str(tmp_path / "grid"), str(tmp_path / "more")], out)
  assert both["rules"] == lr_selection.select(rows, FIT)["t"]
  assert both["grid"] == list(RATES) and both["pilots"] == ["pilot", "pilot_2"]
  assert os.path.isfile(os.path.join(out, "pilot_2", "results.csv"))
  with pytest.raises(ConfigError, match="more than once"):
    lr_selection.write_selection([str(tmp_path / "grid")] * 2, str(tmp_path / "twice"))
