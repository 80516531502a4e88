"""The RNN and the objective against independent computations (float64)."""

from credit import losses
from credit.models import rnn
from credit.rules import bptt
from credit.tasks.base import Batch
from credit.training.objective import make_total_loss

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from tests.conftest import assert_trees_close, xent_task


def tiny_problem(
  key,
  *,
  n=5,
  n_in=3,
  n_out=2,
  t=6,
  b=4,
  alpha=0.7,
  activation="tanh",
  no_autapse=True,
  dtype=jnp.float64,
):
  spec = rnn.RNNSpec(
    n_in=n_in, n_hidden=n, n_out=n_out, alpha=alpha, activation=activation, no_autapse=no_autapse
  )
  k1, k2, k3, k4 = jax.random.split(key, 4)
  params = rnn.init_params(k1, spec, dtype)
  params["b"] = 0.1 * jax.random.normal(k4, (n,), dtype)
  x = jax.random.normal(k2, (b, t, n_in), dtype)
  labels = jax.random.randint(k3, (b,), 0, n_out)
  mask = jnp.zeros((b, t), dtype).at[:, -2:].set(1.0)
  targets = jnp.broadcast_to(jax.nn.one_hot(labels, n_out, dtype=dtype)[:, None], (b, t, n_out))
  return spec, params, Batch(x, targets, mask)


def numpy_forward(params, spec, x):
  """An independent loop implementation of the dynamics."""
  p = {k: np.asarray(v) for k, v in params.items()}
  w_rec = p["w_rec"] * (1 - np.eye(spec.n_hidden)) if spec.no_autapse else p["w_rec"]
  phi = (lambda u: np.maximum(u, 0)) if spec.activation == "relu" else np.tanh
  b, t, _ = x.shape
  h = np.zeros((b, spec.n_hidden))
  ys = []
  for s in range(t):
    u = h @ w_rec.T + x[:, s] @ p["w_in"].T + p["b"]
    h = (1 - spec.alpha) * h + spec.alpha * phi(u)
    ys.append(h @ p["w_out"].T + p["b_out"])
  return np.stack(ys, 1)


@pytest.mark.parametrize("steps", [(5,), (2,), (1, 4), (0, 3, 5)])
def test_loss_at_static_steps_equals_loss_over_all_readouts(x64, steps):
  """make_total_loss with static loss steps reads out there only: same loss, gradient, HVP."""
  spec, params, batch = tiny_problem(jax.random.key(3))
  mask = np.zeros(batch.mask.shape)
  mask[:, list(steps)] = np.random.default_rng(0).uniform(0.2, 1, (mask.shape[0], len(steps)))
  batch = batch._replace(mask=jnp.asarray(mask))
  y = numpy_forward(params, spec, np.asarray(batch.inputs))
  np.testing.assert_allclose(
    rnn.outputs_at_steps(params, spec, batch.inputs, steps), y[:, list(steps)], rtol=1e-12
  )
  static = make_total_loss(spec, xent_task(spec)._replace(loss_steps=steps), 1e-2)
  every = make_total_loss(spec, xent_task(spec), 1e-2)
  np.testing.assert_allclose(static(params, batch), every(params, batch), rtol=1e-13)
  assert_trees_close(jax.grad(static)(params, batch), jax.grad(every)(params, batch))
  v = jax.tree.map(jnp.ones_like, params)
  hvp = lambda f: jax.jvp(lambda p: jax.grad(f)(p, batch), (params,), (v,))[1]  # noqa: E731
  assert_trees_close(hvp(static), hvp(every))


@pytest.mark.parametrize("activation,alpha", [("relu", 1.0), ("tanh", 0.6), ("relu", 0.3)])
def test_forward_matches_loop_implementation(x64, activation, alpha):
  spec, params, batch = tiny_problem(jax.random.key(0), activation=activation, alpha=alpha)
  traj = rnn.forward(params, spec, batch.inputs)
  np.testing.assert_allclose(
    traj.y, numpy_forward(params, spec, np.asarray(batch.inputs)), rtol=1e-12, atol=1e-12
  )
  np.testing.assert_allclose(rnn.outputs(params, spec, batch.inputs), traj.y, rtol=1e-12)
  np.testing.assert_allclose(traj.h_prev[:, 1:], traj.h[:, :-1])


@pytest.mark.parametrize("activation,alpha", [("tanh", 0.6), ("relu", 1.0)])
def test_bptt_gradient_matches_central_finite_differences(x64, activation, alpha):
  spec, params, batch = tiny_problem(jax.random.key(1), activation=activation, alpha=alpha)
  loss = make_total_loss(spec, xent_task(spec), reg_l2=1e-2)
  grads = jax.grad(loss)(params, batch)
  flat, unravel = ravel_pytree(params)
  f = jax.jit(lambda v: loss(unravel(v), batch))
  eps = 1e-6
  eye = np.eye(flat.size)
  fd = np.array([(f(flat + eps * e) - f(flat - eps * e)) / (2 * eps) for e in eye])
  g = np.asarray(ravel_pytree(grads)[0])
  # The masked diagonal of W_rec has no effect on the loss: both must be zero there.
  assert np.linalg.norm(g - fd) / np.linalg.norm(fd) < 1e-6
  assert np.all(np.diag(np.asarray(grads["w_rec"])) == 0)


def test_bptt_from_traces_equals_jax_grad(x64):
  spec, params, batch = tiny_problem(jax.random.key(2), activation="tanh", alpha=0.5)
  task = xent_task(spec)
  traj = rnn.forward(params, spec, batch.inputs)
  errors = jax.grad(lambda y: task.loss(y, batch))(traj.y)
  rule = bptt.make(spec)
  expected = jax.grad(lambda p: task.loss(rnn.forward(p, spec, batch.inputs).y, batch))(params)
  assert_trees_close(rule.grads(params, {}, traj, errors, None), expected, rtol=1e-12)


def test_losses_against_numpy(x64):
  rng = np.random.default_rng(0)
  y = rng.normal(size=(4, 3, 5))
  labels = rng.integers(0, 5, 4)
  targets = np.repeat(np.eye(5)[labels][:, None], 3, 1)
  mask = np.array([[0, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], float)
  logp = y - np.log(np.exp(y).sum(-1, keepdims=True))
  ce = -(targets * logp).sum(-1)
  assert np.isclose(losses.cross_entropy(y, targets, mask), (ce * mask).sum() / mask.sum())
  hit = (y.argmax(-1) == labels[:, None]).astype(float)
  assert np.isclose(losses.accuracy(y, targets, mask), (hit * mask).sum() / mask.sum())
  sq = ((y - targets) ** 2).mean(-1)
  assert np.isclose(losses.masked_mse(y, targets, mask), (sq * mask).sum() / mask.sum())
  m = mask[..., None].astype(bool).repeat(5, -1)
  sst = ((targets - targets[mask.astype(bool)].mean(0)) ** 2)[m].sum()
  r2 = 1 - ((y - targets) ** 2)[m].sum() / sst
  assert np.isclose(losses.r2_score(y, targets, mask), r2)
  params = {"w_in": y[0], "w_rec": y[1], "w_out": y[2], "b": y[3, 0], "b_out": y[3, 1]}
  assert_trees_close(
    losses.l2_gradient(params, 0.3),
    jax.grad(lambda p: losses.l2_penalty(p, 0.3))(params),
    rtol=1e-14,
  )


def test_dale_projection_keeps_signs_and_autapses_stay_zero(x64):
  spec = rnn.RNNSpec(n_in=2, n_hidden=10, n_out=2, dale=True, frac_exc=0.8)
  params = rnn.project(rnn.init_params(jax.random.key(3), spec, jnp.float64), spec)
  sign = np.asarray(rnn.presynaptic_sign(spec))
  assert np.all(np.asarray(params["w_rec"]) * sign[None, :] >= 0)
  assert spec.n_exc == 8 and np.all(sign[:8] == 1) and np.all(sign[8:] == -1)
  noisy = {**params, "w_rec": params["w_rec"] + jax.random.normal(jax.random.key(4), (10, 10))}
  projected = np.asarray(rnn.project(noisy, spec)["w_rec"])
  assert np.all(projected * sign[None, :] >= 0)
  assert np.all(np.diag(projected) == 0)
  # Weights that kept their sign are untouched by the projection.
  raw = np.asarray(noisy["w_rec"])
  keep = (raw * sign[None, :] > 0) & ~np.eye(10, dtype=bool)
  np.testing.assert_array_equal(projected[keep], raw[keep])


def test_reference_initialization_statistics():
  spec = rnn.RNNSpec(n_in=28, n_hidden=400, n_out=10)
  p = rnn.init_params(jax.random.key(5), spec)
  off = np.asarray(p["w_rec"])[~np.eye(400, dtype=bool)]
  assert abs(off.std() - np.sqrt(2 / 400)) < 0.01 * np.sqrt(2 / 400) * 5
  assert abs(np.asarray(p["w_in"]).std() - np.sqrt(2 / 28)) < 0.05 * np.sqrt(2 / 28)
  limit = np.sqrt(6 / 410)
  assert np.abs(np.asarray(p["w_out"])).max() <= limit
  assert np.all(np.diag(np.asarray(p["w_rec"])) == 0)


def test_dale_initialization_balanced_and_as_strong_as_the_reference(x64):
  """Under Dale's law the mean input cancels and each row keeps the reference second moment.

  Rows of ``W_rec ~ N(0, 2/N)`` have ``sum_j E[W_ij^2] = 2(N-1)/N`` (zero diagonal); the
  Dale init must match it (not exceed it n_E/n_I-fold, which made DMS unstable at
  initialization), and its expected row sum must vanish: ``n_E E|w_E| = n_I E|w_I|``.
  """
  n = 400
  dale = rnn.RNNSpec(n_in=3, n_hidden=n, n_out=2, dale=True, frac_exc=0.8)
  plain = dale._replace(dale=False)
  w = np.asarray(rnn.init_params(jax.random.key(6), dale, jnp.float64)["w_rec"])
  w_ref = np.asarray(rnn.init_params(jax.random.key(6), plain, jnp.float64)["w_rec"])
  sign = np.asarray(rnn.presynaptic_sign(dale, jnp.float64))
  assert np.all(w * sign[None, :] >= 0)
  row_second_moment = (w**2).sum(1).mean()
  np.testing.assert_allclose(row_second_moment, 2 * (n - 1) / n, rtol=0.02)
  np.testing.assert_allclose(row_second_moment, (w_ref**2).sum(1).mean(), rtol=0.03)
  # E|N(0, s^2)| = s sqrt(2/pi): the excitatory and inhibitory means cancel row by row in
  # expectation; the spread of one row's sum is ~ sqrt(2 (1 - 2/pi)) = 0.85.
  row_sum = w.sum(1)
  assert abs(row_sum.mean()) < 3 * 0.85 / np.sqrt(n)
  exc_mass = w[:, sign > 0].sum(1).mean()
  assert exc_mass > 10 * abs(row_sum.mean())  # the cancellation is not trivial (both sides large)
  radius = np.abs(np.linalg.eigvals(w)).max()
  radius_ref = np.abs(np.linalg.eigvals(w_ref)).max()
  assert radius < 1.2 * radius_ref
