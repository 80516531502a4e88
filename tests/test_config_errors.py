"""A user's mistake in a config is one ``error:`` line, found before data or compilation.

Issue 26: every ``ValueError`` a config can cause is a :class:`ConfigError` raised
by validation (``credit.training.config.validate``, ``credit.sweeps.cells.expand``),
before any data is loaded; the launchers print it as one line (``credit.cli``),
whether it comes from an override, from the default config, or from the config
file itself (an unknown ``:variant``); overrides that would have no effect win or
are refused; ``--help`` exits 0.

Subprocess tests start a launcher and stop before any training: each is
bounded by its work (parsing and validation), and the generous timeout only
catches a hang on a busy machine (see ``tests/test_reliability.py::LAUNCH_TIMEOUT``).
"""

from __future__ import annotations

import subprocess
import sys

from credit import tasks
from credit.errors import ConfigError
from credit.sweeps import cells as cells_lib
from credit.training import config as config_lib
from credit.training.run import train_and_evaluate

import pytest

from configs import headline, spiking_seq_mnist
from configs.sweeps import paper_seq_mnist
from tests.conftest import smoke_config as smoke
from tests.test_reliability import LAUNCH_TIMEOUT, REPO

LAUNCHERS = ("train", "sweep", "headline", "reproduce", "figures", "report")


def _no_data(monkeypatch):
  """Fails the test if a task (its data) is built: validation must come first."""
  monkeypatch.setattr(tasks, "make", lambda *a, **k: pytest.fail("data loaded before the check"))


def _run(*args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=LAUNCH_TIMEOUT,
    check=False,
    env=env,
  )


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
  assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-2000:]
  for needle in needles:
    assert needle in errors[0], errors[0]
  return errors[0]


# ------------------------------------------------------------- sweeps: rules


def test_overrides_of_rules_the_user_dropped_are_ignored():
  """Item 1: the README's --config.rules='("bptt","rflo")' on the main job, and a one-rule
  reference sweep, expand instead of stopping on eprop's overrides."""
  sweep = headline.get_config()
  sweep.rules = ("bptt", "rflo")
  cells = cells_lib.expand(sweep)
  assert [c.rule for c in cells] == ["bptt", "rflo"]
  assert cells[1].config.num_steps == sweep.tasks.seq_mnist.num_steps  # no eprop override
  paper = paper_seq_mnist.get_config("smoke")
  paper.rules = ("bptt",)
  assert [c.rule for c in cells_lib.expand(paper)] == ["bptt"]


def test_an_unknown_rule_is_named_as_such():
  """Item 3: "unknown rule 'nope'", not a complaint about rule_overrides."""
  sweep = headline.get_config("smoke")
  sweep.rules = ("bptt", "nope")
  with pytest.raises(ConfigError, match="unknown rule 'nope'"):
    cells_lib.expand(sweep)
  sweep = headline.get_config("smoke")
  sweep.rule_overrides = {"epropp": {"num_steps": 3}}  # a typo in an override's rule
  with pytest.raises(ConfigError, match=r"unknown rule\(s\) \['epropp'\]"):
    cells_lib.expand(sweep)


def test_a_tasks_learning_rate_override_takes_effect_in_a_sweep():
  """Item 3: --config.tasks.seq_mnist.optimizer.learning_rate=0.02 used to run at 0.01."""
  sweep = headline.get_config("smoke")
  sweep.tasks.seq_mnist.optimizer.learning_rate = 0.02
  cells = cells_lib.expand(sweep)
  assert {c.config.optimizer.learning_rate for c in cells} == {0.02}
  assert all(c.id.endswith("-lr0.02") for c in cells)
  sweep.learning_rates = (0.005, 0.05)  # swept rates still win where they are given
  assert sorted({c.learning_rate for c in cells_lib.expand(sweep)}) == [0.005, 0.05]
  sweep = headline.get_config("smoke")
  sweep.tasks.seq_mnist.optimizer.learning_rate = -1.0
  with pytest.raises(ConfigError, match="learning_rate must be > 0"):
    cells_lib.expand(sweep)


# ------------------------------------------------- run configs: before data


@pytest.mark.parametrize("rule", ["rtrl", "snap2", "snap"])
def test_influence_rules_above_their_size_guard_fail_in_validation(rule, monkeypatch):
  """Item 2: rtrl / snap2 at n_hidden=512 was a ValueError traceback from make_trainer."""
  _no_data(monkeypatch)
  with pytest.raises(ConfigError, match="rtrl_max_params"):
    config_lib.validate(smoke(rule=rule, **{"model.n_hidden": 512}))
  config_lib.validate(smoke(rule=rule, **{"model.n_hidden": 16}))  # small enough: valid


def test_spiking_online_mdgl_with_a_leaky_readout_fails_in_validation(monkeypatch):
  """Item 2: rule=mdgl, online, kappa 0.9 was a ValueError traceback."""
  _no_data(monkeypatch)
  config = spiking_seq_mnist.get_config("smoke")
  config.rule, config.rule_options.online, config.model.kappa = "mdgl", True, 0.9
  with pytest.raises(ConfigError, match=r"needs model\.kappa = 0.*kappa=0\.9"):
    config_lib.validate(config)
  config.rule_options.online = False  # the offline form has no such limit
  config_lib.validate(config)


@pytest.mark.parametrize(
  "field,value", [("surrogate_width", 0.0), ("surrogate_gamma", -0.3), ("surrogate_gamma", 0.0)]
)
def test_spiking_pseudo_derivative_must_be_positive(field, value, monkeypatch):
  """Item 3: a zero-width or negative pseudo-derivative trained 20 steps and exited 0."""
  _no_data(monkeypatch)
  config = spiking_seq_mnist.get_config("smoke")
  config.model[field] = value
  with pytest.raises(ConfigError, match=f"model.{field} must be a finite number > 0"):
    config_lib.validate(config)


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"batch_size": 4001}, "batch_size=4001 is larger than the 4000 training examples"),
    ({"task_options.train_eval_size": 5000}, "train_eval_size=5000 is larger than the 4000"),
    (
      {"curvature.every": 100, "curvature.batch_size": 600},
      "curvature.batch_size=600 is larger than the 500 validation examples",
    ),
    (
      {"alignment.every": 100, "alignment.batch_size": 501},
      "alignment.batch_size=501 is larger than the 500 validation examples",
    ),
    (
      {"curvature.every": 100, "model.n_hidden": 3, "curvature.lanczos_steps": 8},
      "curvature.lanczos_steps=8 is more than the Hessian's 6 free coordinates",
    ),
  ],
)
def test_sizes_against_the_data_fail_before_any_data_is_loaded(overrides, message, monkeypatch):
  """Item 3: a batch larger than the split was found after the data were built."""
  _no_data(monkeypatch)
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(smoke(**overrides))


def test_a_batch_larger_than_the_split_leaves_no_config_json(tmp_path, monkeypatch):
  """Item 3: it left a config.json in the workdir (validation comes before any write)."""
  _no_data(monkeypatch)
  with pytest.raises(ConfigError, match="batch_size=4001"):
    train_and_evaluate(smoke(batch_size=4001), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


# --------------------------------------------------------- launchers: one line


def test_an_unknown_config_variant_is_one_line():
  """Item 2: configs/seq_mnist.py:smok was a ConfigError traceback."""
  proc = _run("experiments.train", "--config=configs/seq_mnist.py:smok", "--dry_run")
  _one_error_line(proc, "unknown config variant(s) ['smok']", "known: ['smoke'")


@pytest.mark.parametrize(
  "override,needle",
  [
    ("--config.foo=1", "unknown config field 'foo'"),
    ("--config.optimizer.learning_rate=-1", "unknown config field 'optimizer'"),
  ],
)
def test_the_default_config_of_the_main_job_gets_the_error_layer(override, needle):
  """Item 2: without --config, an override of the default config ended in a traceback."""
  _one_error_line(_run("experiments.headline", override, "--dry_run"), needle)


def test_config_errors_found_in_validation_are_one_line_from_the_launcher():
  proc = _run(
    "experiments.train",
    "--config=configs/seq_mnist.py:smoke",
    "--config.rule=rtrl",
    "--config.model.n_hidden=512",
    "--dry_run",
  )
  _one_error_line(proc, "rtrl", "rtrl_max_params=65536")


def test_help_exits_0_on_every_launcher():
  """Item 2: absl exits 1 after printing --help; scripts read that as a failure."""
  procs = {
    name: subprocess.Popen(
      [sys.executable, "-m", f"experiments.{name}", "--help"],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for name in LAUNCHERS
  }
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, (name, err[-1000:])
    assert "--workdir" in out or "--config" in out, (name, out[-500:])
