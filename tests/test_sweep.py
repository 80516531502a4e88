"""Sweeps: cell expansion, sharding, checkpoint/resume, the workdir lock, tables, figures.

The end-to-end tests run ``python -m experiments.sweep`` in subprocesses on a
tiny two-cell sweep: the forced host device count is fixed when XLA's CPU
backend starts, and a SIGKILL needs a process to kill. Every subprocess gets
``NPROC=4``: XLA:CPU sizes its thread pool as max(cores, host devices) and
its matmul blocking follows that size, so runs compared bit for bit must
share it. A persistent compilation cache shared by the subprocesses keeps
them quick (a cached executable is the same binary, so results are the same).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time

from credit.analysis import figures, stats
from credit.sweeps import cells as cells_lib
from credit.sweeps.checkpointing import CellCheckpointer
from credit.sweeps.lock import WorkdirInUseError, WorkdirLock
from credit.sweeps.runner import run_sweep
from credit.training import outputs

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP_CONFIG = """
import ml_collections
from configs import seq_mnist
from credit import rules

def get_config(arg=None):
  base = seq_mnist.get_config("smoke")
  base.model.n_hidden = 16
  base.task_options.train_eval_size = 256
  base.num_seeds = 3  # not a multiple of 4 devices: exercises the padding
  base.num_steps = 300
  base.eval_every = 50
  try:
    import credit.curvature.tracking  # noqa: F401
    base.curvature.every = 100
    base.curvature.batch_size = 64
    base.curvature.lanczos_steps = 6
  except ImportError:
    pass
  sweep = ml_collections.ConfigDict()
  sweep.name = "test"
  sweep.tasks = ml_collections.ConfigDict({"seq_mnist": base})
  if "eprop" in rules.names():
    sweep.rules, sweep.learning_rates = ("bptt", "eprop"), (0.02,)
  else:
    sweep.rules, sweep.learning_rates = ("bptt",), (0.02, 0.05)
  sweep.rule_overrides = ml_collections.ConfigDict()
  sweep.task_rule_overrides = ml_collections.ConfigDict()
  sweep.checkpoint_every = 100
  return sweep
"""


# ------------------------------------------------------------------- helpers


def _load_sweep(path):
  spec = importlib.util.spec_from_file_location("test_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _start(config_path, workdir, devices, cache):
  env = dict(os.environ)
  env.update(
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    NPROC="4",
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.sweep", f"--config={config_path}", f"--workdir={workdir}"],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _finish(proc, timeout=240):
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, f"sweep failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
  return out, err


def _read(path):
  with open(path) as f:
    return f.read()


@pytest.fixture(scope="module")
def sweep_setup(tmp_path_factory):
  """The test sweep's config file, its cells, and a shared compilation cache."""
  root = tmp_path_factory.mktemp("sweep")
  path = root / "tiny_sweep.py"
  path.write_text(SWEEP_CONFIG)
  cells = cells_lib.expand(_load_sweep(str(path)))
  return {"root": root, "config": str(path), "cells": cells, "cache": str(root / "jax_cache")}


@pytest.fixture(scope="module")
def runs(sweep_setup):
  """The sweep run uninterrupted on 1 device and on 4 devices (concurrently)."""
  root = sweep_setup["root"]
  dirs = {1: str(root / "one_device"), 4: str(root / "four_devices")}
  procs = {k: _start(sweep_setup["config"], d, k, sweep_setup["cache"]) for k, d in dirs.items()}
  logs = {k: _finish(p) for k, p in procs.items()}
  return {"dirs": dirs, "logs": logs}


# --------------------------------------------------------------------- cells


def test_expand_applies_overrides_with_stable_ids():
  spec = importlib.util.spec_from_file_location(
    "paper", os.path.join(REPO, "configs", "sweeps", "paper_seq_mnist.py")
  )
  paper = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(paper)
  sweep = paper.get_config()
  cells = cells_lib.expand(sweep, validate=False)
  by_rule = {c.rule: c for c in cells}
  assert [c.id for c in cells] == [
    "seq_mnist-bptt-lr0.01",
    "seq_mnist-three_factor_autodiff-lr0.01",
    "seq_mnist-eprop-lr0.01",
  ]
  assert [c.id for c in cells_lib.expand(paper.get_config(), validate=False)] == [
    c.id for c in cells
  ]
  bptt, eprop = by_rule["bptt"].config, by_rule["eprop"].config
  assert (bptt.num_steps, bptt.eval_every, bptt.curvature.every) == (10_000, 250, 250)
  assert (eprop.num_steps, eprop.eval_every, eprop.curvature.every) == (16_000, 400, 400)
  assert eprop.alignment.every == 400 and bptt.alignment.every == 0
  assert eprop.rule == "eprop" and eprop.optimizer.learning_rate == 0.01
  assert (eprop.batch_size, eprop.num_seeds, eprop.curvature.batch_size) == (256, 5, 256)
  # The base config is untouched by a cell's overrides.
  assert sweep.tasks.seq_mnist.num_steps == 10_000

  sweep = paper.get_config("smoke")
  sweep.rule_overrides.eprop.num_steps = 400  # as --config.rule_overrides.eprop.num_steps=400
  assert [c.config.num_steps for c in cells_lib.expand(sweep, validate=False)] == [200, 320, 400]
  sweep.learning_rates = (0.01, 0.001)
  sweep.task_rule_overrides = {"seq_mnist": {"eprop": {"batch_size": 32}}}
  cells = cells_lib.expand(sweep, validate=False)
  assert len(cells) == 6 and cells[-1].id == "seq_mnist-eprop-lr0.001"
  assert [c.config.batch_size for c in cells if c.rule == "eprop"] == [32, 32]
  assert cells[-1].config.optimizer.learning_rate == 0.001

  sweep.rule_overrides = {"bptt": {"num_stepz": 3}}
  with pytest.raises(KeyError, match="num_stepz"):
    cells_lib.expand(sweep, validate=False)
  # Overrides of a rule the sweep does not run are ignored (issue 26: a user who drops a
  # rule need not drop its overrides); a name that is no rule is a typo, refused.
  sweep.rule_overrides = {"rtrl": {"num_steps": 3}}
  assert all(c.config.num_steps != 3 for c in cells_lib.expand(sweep, validate=False))
  sweep.rule_overrides = {"rtlr": {"num_steps": 3}}
  with pytest.raises(ValueError, match="unknown rule"):
    cells_lib.expand(sweep, validate=False)


@pytest.mark.parametrize(
  "name", ["pattern_generation", "delayed_match_to_sample", "evidence_accumulation"]
)
def test_other_task_sweeps_expand(name):
  if importlib.util.find_spec(f"configs.{name}") is None:
    pytest.skip(f"configs/{name}.py has not landed yet")
  module = importlib.import_module(f"configs.sweeps.{name}")
  for arg in (None, "smoke"):
    cells = cells_lib.expand(module.get_config(arg), validate=False)
    assert [c.rule for c in cells] == ["bptt", "eprop", "eprop_random", "rflo", "mdgl"]
    assert all(c.config.model.dale for c in cells)


# ------------------------------------------------------------------ sharding


def test_sharded_run_equals_single_device(runs, sweep_setup):
  one, four = runs["dirs"][1], runs["dirs"][4]
  assert _read(os.path.join(one, "results.csv")) == _read(os.path.join(four, "results.csv"))
  assert _read(os.path.join(one, "summary.csv")) == _read(os.path.join(four, "summary.csv"))
  cell = sweep_setup["cells"][0]
  with open(os.path.join(four, "cells", cell.id, "run_info.json")) as f:
    info = json.load(f)
  assert (info["devices"], info["padded_seeds"]) == (4, 4)
  assert "3 seeds on 4 device(s) (padded to 4)" in runs["logs"][4][0]


# --------------------------------------------------------- checkpoint/resume


def test_kill_and_resume_equals_uninterrupted(runs, sweep_setup, tmp_path):
  workdir = str(tmp_path / "killed")
  first, second = sweep_setup["cells"]
  ckpt_dir = os.path.join(workdir, "cells", second.id, "checkpoints")
  proc = _start(sweep_setup["config"], workdir, 1, sweep_setup["cache"])
  deadline = time.monotonic() + 240
  while not (os.path.isdir(ckpt_dir) and any(n.isdigit() for n in os.listdir(ckpt_dir))):
    assert proc.poll() is None, "the sweep ended before its second cell's first checkpoint"
    assert time.monotonic() < deadline, "no checkpoint appeared"
    time.sleep(0.02)

  # While it runs, a second sweep on the same workdir is refused.
  with pytest.raises(WorkdirInUseError, match=f"PID {proc.pid} on host"):
    run_sweep(_load_sweep(sweep_setup["config"]), workdir)

  proc.kill()  # SIGKILL: no cleanup at all
  proc.communicate()
  assert not os.path.exists(os.path.join(workdir, "cells", second.id, "summary.json")), (
    "the cell finished before the kill; the test needs a longer cell"
  )
  assert json.loads(_read(os.path.join(workdir, "sweep.lock")))["pid"] == proc.pid

  out, err = _finish(_start(sweep_setup["config"], workdir, 1, sweep_setup["cache"]))
  assert "taking over the stale lock" in err
  assert f"[1/2 {first.id}] finished before; skipped" in out
  assert f"[2/2 {second.id}] resuming from the checkpoint at step" in out
  reference = runs["dirs"][1]
  assert _read(os.path.join(workdir, "results.csv")) == _read(
    os.path.join(reference, "results.csv")
  )
  assert not os.path.exists(os.path.join(workdir, "sweep.lock"))


def test_damaged_latest_checkpoint_falls_back(runs, sweep_setup, tmp_path):
  reference = runs["dirs"][1]
  workdir = str(tmp_path / "damaged")
  shutil.copytree(reference, workdir)
  cell = sweep_setup["cells"][1]
  folder = os.path.join(workdir, "cells", cell.id)
  os.remove(os.path.join(folder, "summary.json"))  # unfinished again
  latest = os.path.join(folder, "checkpoints", "300")
  truncated = 0
  for dirpath, _, names in os.walk(latest):
    for name in names:
      path = os.path.join(dirpath, name)
      if "arrays" in path and os.path.getsize(path) > 16:
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
        truncated += 1
  assert truncated

  out, err = _finish(_start(sweep_setup["config"], workdir, 1, sweep_setup["cache"]))
  assert "checkpoint step 300" in err and "is damaged" in err
  assert f"[2/2 {cell.id}] resuming from the checkpoint at step 200" in out
  assert os.listdir(os.path.join(folder, "damaged"))
  assert _read(os.path.join(workdir, "results.csv")) == _read(
    os.path.join(reference, "results.csv")
  )


def test_checksum_mismatch_falls_back(tmp_path):
  ckpt = CellCheckpointer(str(tmp_path / "cell"))
  state = {"w": np.arange(6.0).reshape(3, 2), "key": np.ones((3, 2), np.uint32)}
  history = {"loss": np.full((3, 4), np.nan, np.float32)}
  for step in (10, 20):
    history["loss"][:, step // 10] = step
    ckpt.save(step, step // 10 + 1, state, history)
  ckpt.close()
  meta_path = tmp_path / "cell" / "checkpoints" / "20" / "meta" / "metadata"
  meta = json.loads(meta_path.read_text())
  meta["sha256"] = "0" * 64  # as if the arrays had been altered on disk
  meta_path.write_text(json.dumps(meta))

  ckpt = CellCheckpointer(str(tmp_path / "cell"))
  with pytest.warns(RuntimeWarning, match="step 20 .* is damaged .*checksum mismatch"):
    restored = ckpt.restore_latest(state, history)
  ckpt.close()
  assert (restored.step, restored.num_evals) == (10, 2)
  np.testing.assert_array_equal(restored.state["w"], state["w"])
  np.testing.assert_array_equal(restored.history["loss"][:, 1], [10, 10, 10])
  assert np.isnan(restored.history["loss"][:, 2]).all()


# ---------------------------------------------------------------------- lock


def test_workdir_lock(tmp_path):
  workdir = str(tmp_path)
  sleeper = subprocess.Popen(["sleep", "60"])
  try:
    holder = WorkdirLock(workdir)
    holder.owner["pid"] = sleeper.pid  # a live process on this host
    holder.owner["start_ticks"] = None
    holder.acquire()
    with pytest.raises(WorkdirInUseError, match=f"in use by another sweep: PID {sleeper.pid}"):
      WorkdirLock(workdir).acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  with pytest.warns(RuntimeWarning, match=f"stale lock .* PID {sleeper.pid}"):
    with WorkdirLock(workdir) as lock:
      assert lock.read()["pid"] == os.getpid()
  assert lock.read() is None  # released

  other = WorkdirLock(workdir)
  other.owner["host"] = "another-host"
  other.owner["pid"] = 1
  other.acquire()
  with pytest.raises(WorkdirInUseError, match="on host another-host"):
    WorkdirLock(workdir).acquire()


# -------------------------------------------------------------------- tables


def test_results_and_summary_tables(runs, sweep_setup):
  workdir = runs["dirs"][1]
  cells = sweep_setup["cells"]
  rows = outputs.read_csv(os.path.join(workdir, "results.csv"))
  evals = len(range(0, 301, 50))
  assert len(rows) == len(cells) * 3 * evals
  assert list(rows[0])[:6] == ["task", "rule", "learning_rate", "seed", "step", "diverged"]
  assert {"train_acc", "test_acc", "gap_acc", "gap_loss", "test_clean_acc"} <= set(rows[0])
  for cell in cells:
    folder = os.path.join(workdir, "cells", cell.id)
    assert len(outputs.read_csv(os.path.join(folder, "metrics.csv"))) == 3 * evals
    with open(os.path.join(folder, "summary.json")) as f:
      assert len(json.load(f)) == 3

  summary = outputs.read_csv(os.path.join(workdir, "summary.csv"))
  assert len(summary) == len(cells)
  for rec in summary:
    final = [
      r
      for r in rows
      if (r["rule"], r["learning_rate"]) == (rec["rule"], rec["learning_rate"]) and r["step"] == 300
    ]
    kept = [r for r in final if not r["diverged"]]
    assert (rec["seeds"], rec["n"], rec["diverged"]) == (3, len(kept), 3 - len(kept))
    for metric in ("gap_acc", "test_loss", "val_acc"):
      values = np.asarray([r[metric] for r in kept])
      np.testing.assert_allclose(rec[f"{metric}_mean"], values.mean(), rtol=1e-12)
      np.testing.assert_allclose(rec[f"{metric}_std"], values.std(ddof=1), rtol=1e-12)


def test_summary_by_hand_with_diverged_seeds_and_sparse_probes():
  rows = []
  for seed, (gap, lam, diverged) in enumerate(
    [(0.1, 10.0, False), (0.3, 30.0, False), (0.2, math.nan, False), (5.0, 99.0, True)]
  ):
    for step in (0, 10, 20):
      rows.append(
        {
          "task": "t",
          "rule": "r",
          "learning_rate": 0.1,
          "seed": seed,
          "step": step,
          "diverged": diverged and step == 20,
          "gap_acc": gap * step / 20,
          "lambda_max": lam if step < 20 else math.nan,
        }
      )  # last probe at step 10
  finals = stats.final_records(rows)
  assert [f["lambda_max"] for f in finals][:2] == [10.0, 30.0]  # last measured value
  (rec,) = stats.summarize(finals)
  assert (rec["seeds"], rec["diverged"], rec["n"], rec["steps"]) == (4, 1, 3, 20)
  np.testing.assert_allclose(rec["gap_acc_mean"], 0.2)
  np.testing.assert_allclose(rec["gap_acc_std"], 0.1)  # sample std of 0.1, 0.3, 0.2
  np.testing.assert_allclose(rec["lambda_max_mean"], 20.0)  # NaN seed left out
  np.testing.assert_allclose(rec["lambda_max_std"], np.std([10.0, 30.0], ddof=1))


# ------------------------------------------------------------------- figures


def _synthetic_rows():
  rng = np.random.default_rng(0)
  rows = []
  for rule, sharpness in (("bptt", 40.0), ("eprop", 90.0)):
    for lr in (0.01, 0.02):
      for seed in range(4):
        lam_final = sharpness * (1 + 0.3 * rng.standard_normal())
        for step in range(0, 401, 100):
          lam = 5 + lam_final * step / 400
          gap = 0.01 + 0.001 * lam + 0.01 * rng.standard_normal()
          rows.append(
            {
              "task": "seq_mnist",
              "rule": rule,
              "learning_rate": lr,
              "seed": seed,
              "step": step,
              "diverged": rule == "eprop" and seed == 3 and lr == 0.02,
              "train_acc": 0.5 + step / 1000,
              "test_acc": 0.5 + step / 1000 - gap,
              "gap_acc": gap,
              "gap_loss": 3 * gap,
              "lambda_max": lam,
              "align_cos": math.nan if rule == "bptt" else 0.5 + 0.1 * rng.standard_normal(),
            }
          )
  return rows


def test_figures_and_their_statistics(runs, tmp_path):
  # From a real (smoke) sweep: whatever its metrics allow.
  report = figures.write_figures(runs["dirs"][1], str(tmp_path / "smoke_figs"))
  names = {os.path.basename(p) for p in report.written}
  assert {"gap_acc_seq_mnist.png", "gap_acc_seq_mnist.pdf", "gap_loss_seq_mnist.png"} <= names
  assert all(os.path.getsize(p) > 1000 for p in report.written)

  # From a table with every metric: all figures, and the titles' statistics are scipy's.
  workdir = tmp_path / "synthetic"
  workdir.mkdir()
  rows = _synthetic_rows()
  outputs.write_csv(str(workdir / "results.csv"), rows)
  report = figures.write_figures(str(workdir))
  stems = {os.path.splitext(os.path.basename(p))[0] for p in report.written}
  assert stems == {
    "gap_acc_seq_mnist",
    "gap_loss_seq_mnist",
    "lambda_max_final_seq_mnist",
    "lambda_max_vs_gap_acc_seq_mnist",
    "lambda_max_vs_gap_loss_seq_mnist",
    "lambda_max_training_seq_mnist",
    "alignment_training_seq_mnist",
    "learning_curves_seq_mnist_lr0.01",
    "learning_curves_seq_mnist_lr0.02",
    "lr_sweep_seq_mnist",
  }
  assert not report.skipped
  from scipy import stats as sp_stats

  final = [r for r in rows if r["step"] == 400 and not r["diverged"]]
  x = [r["lambda_max"] for r in final]
  y = [r["gap_acc"] * 100 for r in final]  # percentage points would not change r
  corr = report.stats["lambda_max_vs_gap_acc_seq_mnist"]
  assert corr.n == 15
  pearson, spearman = sp_stats.pearsonr(x, y), sp_stats.spearmanr(x, y)
  np.testing.assert_allclose(
    [corr.pearson_r, corr.pearson_p], [pearson.statistic, pearson.pvalue], rtol=1e-10
  )
  np.testing.assert_allclose(
    [corr.spearman_r, corr.spearman_p], [spearman.statistic, spearman.pvalue], rtol=1e-10
  )
  with open(workdir / "figures" / "figure_stats.json") as f:
    saved = json.load(f)["lambda_max_vs_gap_acc_seq_mnist"]
  np.testing.assert_allclose(saved["pearson_r"], pearson.statistic, rtol=1e-12)
