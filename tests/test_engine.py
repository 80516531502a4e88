"""The training engine's fast paths against the plain computations they replace (float64)."""

from credit import rules, tasks
from credit.models import rnn
from credit.tasks.base import batch_at_steps
from credit.training.objective import loss_and_grads, make_total_loss

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.conftest import relative_error, smoke_config, xent_task
from tests.test_rules import make_net


def _last_step_errors(errors: jax.Array, steps: tuple[int, ...]) -> jax.Array:
  keep = np.zeros(errors.shape[1])
  keep[list(steps)] = 1.0
  return errors * keep[None, :, None]


@pytest.mark.parametrize(
  "name", ["eprop", "eprop_random", "rflo", "mdgl", "mdgl_exact", "tbptt2", "tbptt4"]
)
@pytest.mark.parametrize("kind", ["relu", "tanh_leaky"])
@pytest.mark.parametrize("loss_steps", [(5,), (2, 4)])
def test_static_loss_steps_give_the_run_time_gradient(x64, name, kind, loss_steps):
  spec, params, traj, errors = make_net(kind, dale=name.startswith("mdgl"))
  errors = _last_step_errors(errors, loss_steps)
  options = ml_collections.ConfigDict(dict(online=False))
  if name.startswith("tbptt"):  # window 2: static windows; 4 with two loss steps: they overlap
    name, options.truncation = "tbptt", int(name[-1])
  dynamic = rules.make(name, spec, options)
  static = rules.make(name, spec, options, loss_steps=loss_steps)
  state = dynamic.init(jax.random.key(0), params)
  key = jax.random.key(1)
  want = jax.jit(dynamic.grads)(params, state, traj, errors, key)
  # The static rule is built for the trajectory from its first step on.
  start = static.first_step
  got = jax.jit(static.grads)(params, state, traj.from_step(start), errors[:, start:], key)
  assert relative_error(got, want) < 1e-12
  assert float(jnp.abs(got["w_rec"]).sum()) > 0


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_forward_from_a_start_step_is_the_trajectory_suffix(x64, alpha):
  spec = rnn.RNNSpec(3, 6, 2, alpha=alpha, activation="relu")
  params = rnn.init_params(jax.random.key(0), spec, jnp.float64)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(4, 7, 3)))
  noise = jnp.asarray(rng.normal(size=(4, 7, 6)))
  full = rnn.forward(params, spec, x, noise=noise)
  for start in (1, 4, 6):
    got = rnn.forward(params, spec, x, noise=noise, start=start)
    want = full.from_step(start)
    assert got.h.shape[1] == 7 - start
    for a, b in zip(got, want, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
  with pytest.raises(ValueError, match="start=7"):
    rnn.forward(params, spec, x, start=7)


@pytest.mark.parametrize("name", ["eprop", "rflo", "mdgl", "tbptt"])
@pytest.mark.parametrize("noisy", [False, True])
def test_rules_that_read_a_suffix_train_on_the_same_gradient(x64, name, noisy):
  # seq-MNIST's loss sits on the last step: these rules skip storing the earlier states.
  config = smoke_config()
  task = tasks.make("seq_mnist", config.task_options, jnp.float64)
  spec = rnn.RNNSpec(28, 8, 10, alpha=1.0, activation="relu", dale=name == "mdgl")
  params = rnn.project(rnn.init_params(jax.random.key(3), spec, jnp.float64), spec)
  batch = task.sample_train(jax.random.key(4), 16)
  options = ml_collections.ConfigDict(dict(truncation=5))
  suffix = rules.make(name, spec, options, loss_steps=task.loss_steps)
  whole = rules.make(name, spec, options)
  assert suffix.first_step > 0 and whole.first_step == 0
  state = whole.init(jax.random.key(0), params)
  noise = None
  if noisy:
    noise = jnp.asarray(np.random.default_rng(2).normal(size=(16, task.n_steps, 8)))
  key = jax.random.key(1)
  got = loss_and_grads(suffix, spec, task, 0.01, params, state, batch, key, noise)
  want = loss_and_grads(whole, spec, task, 0.01, params, state, batch, key, noise)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
  assert relative_error(got[1], want[1]) < 1e-12
  assert float(jnp.abs(got[1]["w_rec"]).sum()) > 0


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_bptt_training_gradient_equals_reverse_mode_of_the_objective(x64, alpha):
  spec = rnn.RNNSpec(4, 7, 3, alpha=alpha, activation="relu")
  task = xent_task(spec)
  rng = np.random.default_rng(0)
  params = rnn.init_params(jax.random.key(0), spec, jnp.float64)
  x = jnp.asarray(rng.normal(size=(5, 6, 4)))
  targets = jnp.asarray(np.eye(3)[rng.integers(0, 3, (5, 6))])
  mask = jnp.asarray(rng.integers(0, 2, (5, 6)), jnp.float64)
  batch = tasks.base.Batch(x, targets, mask)
  rule = rules.make("bptt", spec)
  assert not rule.autodiff  # trains through the trace form
  loss, grads = loss_and_grads(rule, spec, task, 0.01, params, {}, batch, jax.random.key(1))
  want_loss, want = jax.value_and_grad(make_total_loss(spec, task, 0.01))(params, batch)
  assert relative_error(grads, want) < 1e-12
  np.testing.assert_allclose(
    loss + 0.01 * 0.5 * sum(float(jnp.sum(params[k] ** 2)) for k in ("w_in", "w_rec", "w_out")),
    want_loss,
    rtol=1e-12,
  )


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_forward_matches_the_one_step_map(x64, alpha):
  spec = rnn.RNNSpec(3, 6, 2, alpha=alpha, activation="relu")
  params = rnn.init_params(jax.random.key(0), spec, jnp.float64)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5, 3)))
  traj = rnn.forward(params, spec, x)
  h = jnp.zeros((4, 6))
  for t in range(5):
    h, u, dphi = rnn.step(params, spec, h, x[:, t])
    np.testing.assert_allclose(traj.h[:, t], h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(traj.u[:, t], u, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(traj.dphi[:, t], dphi)


def test_chunked_evaluation_equals_one_pass(x64):
  spec = rnn.RNNSpec(3, 6, 2, alpha=0.5, activation="tanh")
  params = rnn.init_params(jax.random.key(0), spec, jnp.float64)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(23, 5, 3)))
  want = rnn.outputs(params, spec, x)
  for chunk in (4, 23, 64):
    np.testing.assert_allclose(rnn.outputs_in_chunks(params, spec, x, chunk), want, rtol=1e-14)


def test_evaluation_at_loss_steps_equals_all_steps(x64):
  # Evaluation keeps only the task's static loss steps; loss and score must not change.
  config = smoke_config()
  task = tasks.make("seq_mnist", config.task_options, jnp.float64)
  spec = rnn.RNNSpec(28, 8, 10, alpha=1.0, activation="relu")
  params = rnn.init_params(jax.random.key(3), spec, jnp.float64)
  batch = task.eval_sets["test"]
  y_all = rnn.outputs_in_chunks(params, spec, batch.inputs, 64)
  y_at = rnn.outputs_in_chunks(params, spec, batch.inputs, 64, task.loss_steps)
  assert y_at.shape[1] == len(task.loss_steps) < y_all.shape[1]
  sliced = batch_at_steps(batch, task.loss_steps)
  np.testing.assert_allclose(task.loss(y_at, sliced), task.loss(y_all, batch), rtol=1e-13)
  assert task.score(y_at, sliced) == task.score(y_all, batch)
  # Not vacuous: another step's readouts give another loss.
  wrong = batch_at_steps(batch, (0,))
  y0 = rnn.outputs_in_chunks(params, spec, batch.inputs, 64, (0,))
  assert abs(task.loss(y0, sliced) - task.loss(y_all, batch)) > 1e-6
  assert wrong.mask.sum() == 0  # the mask is zero off the loss step


def test_seq_mnist_declares_its_loss_step():
  config = smoke_config()
  task = tasks.make("seq_mnist", config.task_options)
  batch = task.sample_train(jax.random.key(0), 8)
  steps = np.flatnonzero(np.asarray(batch.mask).any(axis=0))
  assert tuple(steps) == task.loss_steps
