"""Spiking networks through the training stack: configs (``model.kind = "lif"``), rules,
spike-encoded tasks, the alignment probe against spiking BPTT, the sweeps, and smoke runs
that learn through ``experiments.train``.

The probes' curvature definitions are checked against dense matrices in
``tests/test_spiking.py``.
"""

import os
import subprocess
import sys

import credit  # noqa: F401  (before jax)
from credit import rules, tasks
from credit.curvature import spiking as spiking_curvature
from credit.errors import ConfigError
from credit.models import lif
from credit.tasks import spike_encoding
from credit.training import config as config_lib
from credit.training import outputs
from credit.training.alignment_probe import make_alignment_probe
from credit.training.run import train_and_evaluate

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import spiking_seq_mnist
from tests.test_spiking import B, curvature_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spiking(task="evidence_accumulation", **fields):
  config = config_lib.base_config(task, model="lif")
  for key, value in fields.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return config


@pytest.mark.parametrize(
  "fields, message",
  [
    ({"model.kind": "spiking"}, r"model.kind must be one of \('rate', 'lif'\)"),
    ({"rule": "rtrl"}, r"rule 'rtrl' does not exist for spiking networks.*'eprop_random'"),
    ({"model.kappa": 1.5}, "kappa must be in"),
    ({"model.surrogate": "boxcar"}, "surrogate.kind"),
    ({"curvature.spiking_definition": "exact"}, "curvature.spiking_definition must be one of"),
    ({"curvature.temperature": 0.0}, "curvature.temperature must be > 0"),
    (
      {"curvature.spiking_definition": "surrogate", "curvature.also_surrogate": True},
      "also_surrogate needs curvature.spiking_definition='smoothed'",
    ),
    ({"theory.every": 250}, "theory.every must be 0 for a spiking network"),
    ({"task_options.spike_encoding": "rate"}, "task_options.spike_encoding must be one of"),
  ],
)
def test_bad_spiking_configs_fail_with_a_named_field(fields, message):
  config_lib.validate(_spiking())  # the defaults are valid
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(_spiking(**fields))


def test_a_model_block_of_the_other_kind_is_refused_with_a_hint():
  rate = config_lib.base_config("seq_mnist")
  assert rate.model.kind == "rate"
  config_lib.validate(rate)
  rate.model.kind = "lif"
  with pytest.raises(ConfigError, match=r"no field\(s\) \['activation'\].*model='lif'"):
    config_lib.validate(rate)
  # A rate network has no spiking rules' curvature fields either.
  with pytest.raises(ConfigError, match=r"curvature\.(also_surrogate|spiking_definition)"):
    config_lib.validate(_spiking("seq_mnist", **{"model": config_lib.model_defaults("rate")}))


def test_rules_follow_the_spec():
  spec = lif.LIFSpec(3, 4, 2)
  assert rules.names_for("lif") == ("bptt", "eprop", "eprop_random", "mdgl", "mdgl_exact", "rflo")
  with pytest.raises(ValueError, match=r"no spiking form.*'mdgl'"):
    rules.make("snap", spec)
  # The spiking BPTT gradient is the surrogate gradient of the forward pass.
  params = lif.init_params(jax.random.key(0), spec._replace(init_gain=4.0))
  x = (jax.random.uniform(jax.random.key(1), (2, 7, 3)) < 0.5).astype(jnp.float32)
  errors = jax.random.normal(jax.random.key(2), (2, 7, 2))
  rule = rules.make("bptt", spec)
  got = rule.grads(params, {}, lif.forward(params, spec, x), errors, None)
  want = jax.grad(lambda p: jnp.sum(errors * lif.outputs(p, spec, x)))(params)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-4, atol=1e-6)


def test_spike_encoded_seq_mnist_is_a_task_option():
  options = tasks.default_options("seq_mnist")
  options.update(
    dict(source="synthetic", synthetic_train=300, synthetic_test=100, train_eval_size=64)
  )
  raw = tasks.make("seq_mnist", options)
  options.update(spike_encoding.default_options())
  options.update(dict(spike_encoding="threshold", spike_levels=(0.3, 0.6)))
  tasks.validate("seq_mnist", options)
  encoded = tasks.make("seq_mnist", options)
  assert encoded.n_in == 2 * 2 * 28
  for split, batch in raw.eval_sets.items():
    want = spike_encoding.threshold_crossings(batch.inputs, (0.3, 0.6))
    np.testing.assert_array_equal(encoded.eval_sets[split].inputs, want)
    np.testing.assert_array_equal(encoded.eval_sets[split].targets, batch.targets)
  x = encoded.sample_train(jax.random.key(0), 8).inputs
  assert set(np.unique(x)) <= {0.0, 1.0} and x.shape == (8, 28, 112) and x.sum() > 0


@pytest.mark.parametrize("name", ["eprop", "bptt"])
def test_alignment_probe_compares_with_spiking_bptt(x64, name):
  """The probe's cosine is that between the rule's update and ``jax.grad`` of the spiking
  loss (the surrogate gradient), both with the exact L2 term."""
  spec, params, batch, task = curvature_setup()
  task = task._replace(eval_sets={"val": batch})
  config = _spiking(**{"alignment.every": 1, "alignment.batch_size": B, "reg_l2": 0.01})
  rule = rules.make(name, spec)
  got = jax.jit(make_alignment_probe(config, spec, task, rule))(
    params, {}, jax.random.key(0), jnp.asarray(0)
  )
  total = spiking_curvature.spiking_loss(spec, task, 0.01)
  reference = jax.grad(total)(params, batch)
  traj = lif.forward(params, spec, batch.inputs)
  errors = jax.grad(lambda y: task.loss(y, batch))(traj.y)
  update = rule.grads(params, {}, traj, errors, None)
  update = {k: update[k] + 0.01 * params[k] * (k in ("w_in", "w_rec", "w_out")) for k in params}
  g = np.concatenate([np.ravel(update[k]) for k in sorted(params)])
  r = np.concatenate([np.ravel(reference[k]) for k in sorted(params)])
  want = g @ r / np.linalg.norm(g) / np.linalg.norm(r)
  np.testing.assert_allclose(float(got["align_cos"]), want, rtol=1e-8)
  if name == "bptt":
    np.testing.assert_allclose(float(got["align_cos"]), 1.0, rtol=1e-12)
  else:
    assert want < 0.999


def test_spiking_sweeps_are_ready():
  from credit.sweeps import cells

  from configs.sweeps import spiking_evidence_accumulation as ea
  from configs.sweeps import spiking_seq_mnist as sm

  for module in (ea, sm):
    for arg in (None, "smoke"):
      sweep = module.get_config(arg)
      grid = cells.expand(sweep)  # validates every cell's run config
      assert [c.rule for c in grid] == ["bptt", "eprop", "eprop_random", "mdgl"]
      for cell in grid:
        assert cell.config.model.kind == "lif" and cell.config.model.dale
        assert cell.config.curvature.every > 0
        assert (cell.config.alignment.every > 0) == (cell.rule != "bptt")
      (criterion,) = sweep.fit_criteria.values()
      assert dict(criterion) == dict(metric="train_acc", at_least=0.95)


def test_spiking_study_measures_both_curvature_definitions_at_every_evaluation():
  """configs/reproduce/spiking.py: every cell validates, and its probe reports the smoothed
  proxy's lambda_max and the surrogate Jacobian's two numbers wherever the fit is judged."""
  from credit.curvature.tracking import metric_names
  from credit.reproduction.plan import plan
  from credit.sweeps import cells

  from configs.reproduce import spiking as study

  for arg in (None, "smoke"):
    sweeps = plan(study.get_config(arg), None, None, validate=False)
    assert sorted(task for task, _, _ in sweeps) == sorted(study.TASKS)
    for task, _, sweep in sweeps:
      assert dict(sweep.fit_criteria[task]) == study.FIT_CRITERIA[task]
      for cell in cells.expand(sweep):
        c = cell.config
        assert c.curvature.every == c.eval_every and c.theory.every == 0
        names = metric_names(c)
        assert {"lambda_max", "surrogate_lambda_max", "jacobian_max_real"} <= set(names)


def test_spiking_evidence_accumulation_smoke_learns_through_the_launcher(tmp_path):
  """``experiments.train`` on the smoke config, e-prop on LIF/ALIF units, with the surrogate
  curvature and the alignment probes on: accuracy well above chance (0.5)."""
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config=configs/spiking_evidence_accumulation.py:smoke",
      f"--workdir={tmp_path}",
      "--config.num_seeds=1",
      "--config.rule=eprop",
      "--config.curvature.every=100",
      "--config.curvature.spiking_definition=surrogate",
      "--config.curvature.batch_size=32",
      "--config.curvature.lanczos_steps=4",
      "--config.curvature.top_k=1",
      "--config.alignment.every=100",
      "--config.alignment.batch_size=32",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  rows = outputs.read_csv(tmp_path / "metrics.csv")
  assert [r["step"] for r in rows] == [0, 100, 200]
  assert rows[-1]["train_acc"] > 0.8 and rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"]
  for r in rows:
    assert np.isfinite(r["lambda_max"]) and np.isfinite(r["jacobian_max_real"])
    assert -1.0 <= r["align_cos"] <= 1.0
  assert rows[-1]["align_cos"] > 0.0  # e-prop's update points downhill


def test_spiking_seq_mnist_smoke_learns(tmp_path):
  """Surrogate BPTT on spike-encoded (threshold-crossing) synthetic seq-MNIST, smoothed-proxy
  curvature at the end: loss falls and accuracy is well above chance (0.1)."""
  config = spiking_seq_mnist.get_config("smoke")
  config.num_seeds = 1
  config.curvature.update(dict(every=200, batch_size=32, lanczos_steps=4, top_k=1))
  result = train_and_evaluate(config, str(tmp_path))
  h = result.history
  assert not h["diverged"].any()
  assert h["train_loss"][0, -1] < 0.9 * h["train_loss"][0, 0]
  assert h["train_acc"][0, -1] > 0.25
  assert np.isnan(h["lambda_max"][0, 1]) and h["lambda_max"][0, -1] > 0


def test_committed_spiking_report_regenerates_from_its_results(tmp_path):
  """results/spiking/REPORT.md is what experiments.report makes of the files beside it."""
  import shutil

  from credit.reproduction import document

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  committed = os.path.join(repo, "results", "spiking")
  if not os.path.exists(os.path.join(committed, "REPORT.md")):
    pytest.skip("no committed spiking study")
  work = tmp_path / "spiking"
  shutil.copytree(committed, work, ignore=shutil.ignore_patterns("REPORT.md", "report.json"))
  document.write_report(str(work), shown_as="results/spiking")
  assert (work / "REPORT.md").read_text() == open(os.path.join(committed, "REPORT.md")).read()
