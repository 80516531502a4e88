"""Curvature toolkit against dense Hessians (float64, tiny RNNs) and inside training."""

from typing import NamedTuple

from credit import curvature as cv
from credit import tasks
from credit.curvature.tracking import curvature_batch, parameter_mask
from credit.models import rnn
from credit.tasks.base import Batch, Task, one_hot_at_steps
from credit.training.config import base_config
from credit.training.objective import make_total_loss
from credit.training.run import seed_keys
from credit.training.train import make_train, model_spec

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from matfree import decomp

from configs.seq_mnist import get_config
from tests.conftest import assert_trees_close

REG_L2 = 0.05


def tiny_problem(activation="tanh", batch_size=8, n_steps=5, uneven_mask=False):
  """A 74-parameter RNN, its exact objective and a fixed batch (call under x64)."""
  spec = rnn.RNNSpec(n_in=3, n_hidden=6, n_out=2, activation=activation)
  key_p, key_x, key_y, key_m = jax.random.split(jax.random.key(3), 4)
  params = rnn.init_params(key_p, spec, jnp.float64)
  params["b"] = 0.1 * jnp.arange(6.0) - 0.2  # nonzero biases: a more generic point
  inputs = jax.random.normal(key_x, (batch_size, n_steps, 3), jnp.float64)
  labels = jax.random.randint(key_y, (batch_size,), 0, 2)
  if uneven_mask:  # the loss counts at different numbers of steps per example
    mask = (jax.random.uniform(key_m, (batch_size, n_steps)) < 0.5).astype(jnp.float64)
    mask = mask.at[:, -1].set(1.0)
  else:
    mask = jnp.zeros((batch_size, n_steps), jnp.float64).at[:, -1].set(1.0)
  batch = Batch(inputs, one_hot_at_steps(labels, 2, mask, jnp.float64), mask)
  task = Task(
    name="tiny",
    n_in=3,
    n_out=2,
    n_steps=n_steps,
    objective="xent",
    sample_train=None,
    eval_sets={"val": batch},
    shift="none",
  )
  return spec, params, batch, make_total_loss(spec, task, REG_L2)


def dense_hessian(loss, params, batch, subset=None):
  point = cv.select(params, subset)
  flat, unravel = ravel_pytree(point)
  hess = jax.jit(jax.hessian(lambda f, b: loss({**params, **unravel(f)}, b)))
  return hess(flat, batch)


class Tiny(NamedTuple):
  spec: rnn.RNNSpec
  params: dict
  batch: Batch
  loss: object
  hessian: np.ndarray  # over all 74 parameters (ravel_pytree order)
  w_rec_index: np.ndarray  # positions of W_rec (row-major) in that order


@pytest.fixture(scope="module")
def tiny():
  """The tiny problem and its dense Hessian, computed once (float64)."""
  with jax.enable_x64(True):
    spec, params, batch, loss = tiny_problem()
    hessian = np.asarray(dense_hessian(loss, params, batch))
    marker = jax.tree.map(jnp.zeros_like, params)
    marker["w_rec"] = jnp.ones_like(params["w_rec"])
    index = np.flatnonzero(np.asarray(ravel_pytree(marker)[0]))
  return Tiny(spec, params, batch, loss, hessian, index)


def operator_matrix(matvec, like):
  """The dense matrix of a pytree operator, column by column (call inside jit)."""
  flat, unravel = ravel_pytree(like)
  column = lambda e: ravel_pytree(matvec(unravel(e)))[0]
  return jax.vmap(column)(jnp.eye(flat.size, dtype=flat.dtype)).T


def matrix_with_eigenvalues(eigenvalues, seed=0):
  """``Q diag(lambda) Q^T`` with a random orthogonal ``Q`` (matfree's test design)."""
  n = len(eigenvalues)
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
  return jnp.asarray(q @ np.diag(eigenvalues) @ q.T)


def nested_matvec(a):
  """``a @ v`` for ``v`` shaped ``{"x": [k], "y": {"z": [n - k]}}``: a nested-pytree operator."""
  n = a.shape[0]
  like = {"x": jnp.zeros(3, a.dtype), "y": {"z": jnp.zeros(n - 3, a.dtype)}}
  _, unravel = ravel_pytree(like)
  return (lambda v: unravel(a @ ravel_pytree(v)[0])), like


# --- HVP -------------------------------------------------------------------------------------


def test_hvp_equals_dense_hessian_columns(x64, tiny):
  @jax.jit
  def matrices(params):
    # linearize=True runs the primal once and reuses it for all 74 columns.
    return [
      operator_matrix(cv.make_hvp(tiny.loss, params, tiny.batch, linearize=lin), params)
      for lin in (False, True)
    ]

  h = tiny.hessian
  assert h.shape == (74, 74)
  for m in matrices(tiny.params):
    np.testing.assert_allclose(m, h, atol=1e-12 * np.abs(h).max())


def test_subset_hvp_equals_hessian_block_and_mask_restricts_it(x64, tiny):
  idx = tiny.w_rec_index
  block = tiny.hessian[np.ix_(idx, idx)]
  sub = cv.select(tiny.params, ("w_rec",))
  mask = parameter_mask(tiny.params, tiny.spec, ("w_rec",))

  @jax.jit
  def matrices(params):
    return [
      operator_matrix(cv.make_hvp(tiny.loss, params, tiny.batch, ("w_rec",), mask=m), sub)
      for m in (None, mask)
    ]

  plain, masked = matrices(tiny.params)
  np.testing.assert_allclose(plain, block, atol=1e-12 * np.abs(block).max())
  # The autapse mask P: P H P. The stored diagonal only carries the L2 curvature.
  p = np.asarray(mask["w_rec"]).ravel()
  np.testing.assert_allclose(np.diag(block)[p == 0], REG_L2, rtol=1e-12)
  np.testing.assert_allclose(masked, p[:, None] * block * p[None], atol=1e-12 * np.abs(block).max())


def test_chunked_hvp_equals_unchunked_with_l2_counted_once(x64):
  # Uneven masks: chunks hold different numbers of loss terms, so equal chunk
  # weights would be wrong; the L2 term must not be multiplied by the chunk count.
  _, params, batch, loss = tiny_problem(batch_size=8, uneven_mask=True)
  sums = np.asarray(batch.mask).reshape(4, -1).sum(1)
  assert len(set(sums.tolist())) > 1
  v = jax.tree.map(lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape)), params)
  # A plain (non-Batch) batch and a mean loss: equal chunk weights.
  xs = (batch.inputs,)
  plain_loss = lambda p, b: jnp.mean(jnp.tanh(b[0] @ p["w_in"].T) ** 2) + jnp.sum(p["w_in"] ** 2)

  @jax.jit
  def products(v):
    hv = [
      cv.make_hvp(loss, params, batch, chunk_size=c, linearize=lin)(v)
      for c, lin in ((0, False), (1, False), (2, False), (4, True))
    ]
    plain = [cv.make_hvp(plain_loss, params, xs, ("w_in",), chunk_size=c) for c in (0, 2)]
    return hv, [h({"w_in": v["w_in"]}) for h in plain]

  (full, *chunked), (plain_full, plain_chunked) = products(v)
  for hv in chunked:
    assert_trees_close(hv, full, rtol=1e-12)
  assert_trees_close(plain_chunked, plain_full, rtol=1e-12)
  with pytest.raises(ValueError, match="must divide"):
    cv.make_hvp(loss, params, batch, chunk_size=3)


# --- Lanczos ---------------------------------------------------------------------------------


def test_lanczos_recovers_known_eigenvalues_on_a_pytree(x64):
  eigenvalues = np.concatenate([[9.0, 7.5, 7.0], np.linspace(-4.0, 5.0, 37)])
  a = matrix_with_eigenvalues(eigenvalues)
  matvec, like = nested_matvec(a)
  v0 = jax.tree.map(jnp.ones_like, like)

  @jax.jit
  def run(v):
    return (
      cv.lanczos_top_k(matvec, v, 40, 3, return_vectors=True),
      cv.lanczos_tridiag(matvec, v, 40),
      cv.lanczos_top_k(matvec, v, 15, 3),
    )

  top, res, few = run(v0)
  np.testing.assert_allclose(top.eigenvalues, [9.0, 7.5, 7.0], rtol=1e-12)
  vecs = jax.vmap(lambda t: ravel_pytree(t)[0])(top.eigenvectors)
  np.testing.assert_allclose(vecs @ vecs.T, np.eye(3), atol=1e-12)
  np.testing.assert_allclose(vecs @ a, top.eigenvalues[:, None] * vecs, atol=1e-10)
  np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(40), atol=1e-13)
  t = cv.tridiagonal(res.alphas, res.betas)
  np.testing.assert_allclose(res.basis @ a @ res.basis.T, t, atol=1e-12)
  # Fewer steps: extreme Ritz values converge first; the error bounds hold.
  assert np.all(np.abs(few.eigenvalues - np.array([9.0, 7.5, 7.0])) <= few.error_bounds + 1e-12)
  assert abs(few.eigenvalues[0] - 9.0) < 1e-6


def test_lanczos_top3_of_rnn_hessian(x64, tiny):
  eigs = np.linalg.eigvalsh(tiny.hessian)
  exact = eigs[::-1][:3]
  assert exact[0] > abs(eigs[0])  # here lambda_max is also the largest |lambda|
  hvp = cv.make_hvp(tiny.loss, tiny.params, tiny.batch)
  v0 = cv.rademacher_like(jax.random.key(0), tiny.params)
  # The full dimension, and two thirds of it.
  tops = jax.jit(lambda v: [cv.lanczos_top_k(hvp, v, m, 3).eigenvalues for m in (74, 50)])(v0)
  for top in tops:
    np.testing.assert_allclose(top, exact, rtol=1e-8)


def test_lanczos_vmaps_over_seeds(x64):
  a = matrix_with_eigenvalues(np.linspace(-1.0, 3.0, 30))
  v0s = jax.random.normal(jax.random.key(1), (3, 30), jnp.float64)
  run = lambda v: cv.lanczos_top_k(lambda x: a @ x, v, 12, 2).eigenvalues
  batched = jax.jit(jax.vmap(run))(v0s)
  single = jax.jit(run)
  for i in range(3):
    np.testing.assert_allclose(batched[i], single(v0s[i]), rtol=1e-12)


def test_lanczos_tolerance_stops_early_with_the_shorter_runs_values(x64):
  # A separated top (9, 7.5, 7) above a bulk: the top three converge well before 40 steps.
  eigenvalues = np.concatenate([[9.0, 7.5, 7.0], np.linspace(-4.0, 5.0, 57)])
  a = matrix_with_eigenvalues(eigenvalues)
  matvec, like = nested_matvec(a)
  v0 = jax.tree.map(jnp.ones_like, like)
  tol = 1e-6
  adaptive = jax.jit(lambda v: cv.lanczos_top_k(matvec, v, 40, 3, return_vectors=True, tol=tol))
  top = adaptive(v0)
  m = int(top.steps)
  assert 3 <= m < 40
  # Its values are those of a fixed run of m steps (the first steps of a longer run) ...
  fixed = jax.jit(lambda v: cv.lanczos_top_k(matvec, v, m, 3))(v0)
  np.testing.assert_allclose(top.eigenvalues, fixed.eigenvalues, rtol=1e-12)
  np.testing.assert_allclose(top.error_bounds, fixed.error_bounds, rtol=1e-8, atol=1e-14)
  # ... the bounds are met and hold, and one step fewer would not have met them.
  assert np.all(top.error_bounds <= tol * 9.0 * (1 + 1e-9))
  assert np.all(np.abs(top.eigenvalues - np.array([9.0, 7.5, 7.0])) <= top.error_bounds + 1e-12)
  shorter = jax.jit(lambda v: cv.lanczos_top_k(matvec, v, m - 1, 3))(v0)
  assert np.any(shorter.error_bounds > tol * shorter.eigenvalues[0])
  # The Ritz vectors live in the m-step basis: orthonormal eigenvector estimates.
  vecs = jax.vmap(lambda t: ravel_pytree(t)[0])(top.eigenvectors)
  np.testing.assert_allclose(vecs @ vecs.T, np.eye(3), atol=1e-10)
  resid = np.linalg.norm(vecs @ a - top.eigenvalues[:, None] * vecs, axis=1)
  np.testing.assert_allclose(resid, top.error_bounds, rtol=1e-4, atol=1e-12)
  # A tolerance never met runs every step, as tol=0 does.
  never = jax.jit(lambda v: cv.lanczos_top_k(matvec, v, 40, 3, tol=1e-300))(v0)
  exact = jax.jit(lambda v: cv.lanczos_top_k(matvec, v, 40, 3))(v0)
  assert int(never.steps) == 40
  np.testing.assert_allclose(never.eigenvalues, exact.eigenvalues, rtol=1e-13)
  with pytest.raises(ValueError, match="tol"):
    cv.lanczos_top_k(matvec, v0, 40, 3, tol=-1.0)


def test_lanczos_tolerance_under_vmap_stops_each_member_on_its_own(x64):
  # A well separated top converges in a few steps, a clustered one needs many more.
  fast = matrix_with_eigenvalues(np.concatenate([[50.0], np.linspace(0.0, 1.0, 29)]))
  slow = matrix_with_eigenvalues(np.concatenate([[1.02, 1.01], np.linspace(0.0, 1.0, 28)]))
  ops = jnp.stack([fast, slow])
  v0 = jnp.ones((2, 30))
  run = lambda a, v: cv.lanczos_top_k(lambda x: a @ x, v, 25, 1, tol=1e-8)
  batched = jax.jit(jax.vmap(run))(ops, v0)
  steps = [int(s) for s in batched.steps]
  assert steps[0] < steps[1]
  for i in range(2):
    alone = jax.jit(run)(ops[i], v0[i])
    assert int(alone.steps) == steps[i]
    np.testing.assert_allclose(batched.eigenvalues[i], alone.eigenvalues, rtol=1e-12)


def test_lanczos_rejects_more_steps_than_dimension():
  a = jnp.eye(5)
  with pytest.raises(ValueError, match="num_steps=6"):
    cv.lanczos_top_k(lambda v: a @ v, jnp.ones(5), 6, 1)
  with pytest.raises(ValueError, match="k=4"):
    cv.lanczos_top_k(lambda v: a @ v, jnp.ones(5), 3, 4)


def test_lanczos_breakdown_is_masked(x64):
  # Rank 2: the Krylov space of a generic v0 has dimension 3 (two eigenvectors
  # and the null space), so beta_3 = 0 and the loop must continue cleanly.
  u = np.random.default_rng(2).normal(size=(30, 2))
  a = jnp.asarray(u @ np.diag([4.0, 1.5]) @ u.T)
  exact = np.sort(np.linalg.eigvalsh(np.asarray(a)))[::-1]
  # Three distinct eigenvalues of multiplicity 10: a breakdown every third step.
  b = matrix_with_eigenvalues(np.repeat([5.0, 2.0, -1.0], 10), seed=4)

  @jax.jit
  def run(v):
    return (
      cv.lanczos_top_k(lambda x: a @ x, v, 10, 3, return_vectors=True),
      cv.lanczos_tridiag(lambda x: a @ x, v, 10),
      cv.lanczos_top_k(lambda x: b @ x, v, 9, 2),
    )

  top, res, multi = run(jnp.arange(30.0) + 1.0)
  assert np.all(np.isfinite(top.eigenvalues)) and np.all(np.isfinite(top.eigenvectors))
  np.testing.assert_allclose(top.eigenvalues[:2], exact[:2], rtol=1e-12)
  assert abs(top.eigenvalues[2]) < 1e-12 * exact[0]
  assert np.sum(np.asarray(top.betas) == 0.0) >= 1
  np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(10), atol=1e-12)
  np.testing.assert_allclose(multi.eigenvalues, [5.0, 5.0], rtol=1e-12)
  assert np.all(np.isfinite(multi.alphas)) and np.sum(np.asarray(multi.betas) == 0.0) >= 2


def test_krylov_loop_agrees_with_matfree(x64, tiny):
  # matfree's Lanczos and Arnoldi from the same start, before any breakdown (matfree has
  # no breakdown handling, see credit/curvature/krylov.py): 20 steps on the RNN Hessian,
  # 25 on a generic non-symmetric operator.
  hvp = cv.make_hvp(tiny.loss, tiny.params, tiny.batch)
  v0 = cv.rademacher_like(jax.random.key(4), tiny.params)
  a = jnp.asarray(np.random.default_rng(3).normal(size=(40, 40)))

  @jax.jit
  def run(v, u):
    ours = cv.lanczos_tridiag(hvp, v, 20), cv.arnoldi(lambda x: a @ x, u, 25)
    mf = decomp.tridiag_sym(20, reortho="full", materialize=False)(hvp, v)
    return ours, (mf, decomp.hessenberg(25, reortho="full")(lambda x: a @ x, u))

  (res, arn), (mf, mf_arn) = run(v0, jnp.ones(40))
  scale = np.abs(tiny.hessian).max()
  np.testing.assert_allclose(res.alphas, mf.J_small[0], atol=1e-12 * scale)
  np.testing.assert_allclose(res.betas, mf.J_small[1], atol=1e-12 * scale)
  np.testing.assert_allclose(arn.hessenberg, mf_arn.J_small, atol=1e-12)
  np.testing.assert_allclose(arn.basis, mf_arn.Q_tall, atol=1e-12)


def masked_quadratic(scale=0.012):
  """N=6, autapses masked: ``P (-10 I + 2 a a^T) P`` on ``{"w_rec": [6, 6]}`` and its truth.

  On the 30 free synapses the spectrum is -10 (29 times) and about -9.99, all
  below the eigenvalue 0 of the 6 masked coordinates, and a Krylov space has
  dimension 2: Lanczos breaks down at its second step and must restart.
  """
  spec = rnn.RNNSpec(n_in=3, n_hidden=6, n_out=2, no_autapse=True)
  a = scale * jax.random.normal(jax.random.key(1), (6, 6), jnp.float64)
  p = rnn.recurrent_mask(spec, jnp.float64)

  def loss(params, batch):
    del batch
    w = params["w_rec"]
    return -5.0 * jnp.sum(w**2) + jnp.sum(a * w) ** 2

  a_flat, free = np.asarray(a).ravel(), np.flatnonzero(np.asarray(p).ravel())
  h = -10.0 * np.eye(36) + 2.0 * np.outer(a_flat, a_flat)
  truth = np.linalg.eigvalsh(h[np.ix_(free, free)])[::-1]
  return spec, loss, {"w_rec": p}, truth


def test_lanczos_restarts_stay_in_the_free_subspace(x64):
  # Issue 11, item 10: restarts from an unmasked vector let the masked
  # coordinates in with eigenvalue 0, above the true top eigenvalue (-9.99).
  spec, loss, mask, truth = masked_quadratic()
  params = rnn.init_params(jax.random.key(0), spec, jnp.float64)
  hvp = cv.make_hvp(loss, params, jnp.zeros((1,)), ("w_rec",), mask=mask)
  v0 = {"w_rec": jax.random.normal(jax.random.key(2), (6, 6), jnp.float64)}  # masked inside

  @jax.jit
  def run(v):
    return [cv.lanczos_top_k(hvp, v, m, 3, mask=mask) for m in (5, 30)], cv.lanczos_tridiag(
      hvp, v, 30, mask=mask
    )

  tops, res = run(v0)
  assert truth[0] < -9.98
  for top in tops:
    np.testing.assert_allclose(top.eigenvalues, truth[:3], rtol=1e-13)
  assert np.sum(np.asarray(res.betas) == 0.0) >= 10  # it did restart, many times
  p = np.asarray(mask["w_rec"]).ravel()
  np.testing.assert_array_equal(np.asarray(res.basis)[:, p == 0], 0.0)
  np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(30), atol=1e-13)
  t = cv.tridiagonal(res.alphas, res.betas)
  np.testing.assert_allclose(np.linalg.eigvalsh(t)[::-1], truth, rtol=1e-13)
  # More steps than free coordinates cannot stay orthonormal: refused at trace time.
  with pytest.raises(ValueError, match="num_steps=31 .* free .* 30"):
    cv.lanczos_top_k(hvp, v0, 31, 1, mask=mask)


def test_curvature_probe_counts_free_synapses(x64):
  spec, loss, mask, truth = masked_quadratic()
  params = rnn.init_params(jax.random.key(0), spec, jnp.float64)
  batch = Batch(jnp.zeros((4, 5, 3)), jnp.zeros((4, 5, 2)), jnp.ones((4, 5)))
  task = Task("q", 3, 2, 5, "xent", None, {"val": batch}, "none")
  config = base_config()
  config.curvature.update(every=1, batch_size=4, top_k=3)

  def probe(steps, params_option="w_rec"):
    c = config.copy_and_resolve_references()
    c.curvature.lanczos_steps, c.curvature.params = steps, params_option
    return cv.make_curvature_probe(c, spec, task, loss)

  # All 30 free synapses; the Krylov spaces have dimension 2, so Lanczos restarts often.
  out = jax.jit(probe(30))(params, None, jax.random.key(3), 0)
  np.testing.assert_allclose(
    [out["lambda_max"], out["lambda_2"], out["lambda_3"]], truth[:3], rtol=1e-13
  )
  # 36 = N^2 steps passed the old guard and reported lambda_max = 1e-15.
  with pytest.raises(ValueError, match="lanczos_steps \\(31\\) <= Hessian dimension, the 30 free"):
    probe(31)
  with pytest.raises(ValueError, match="68 free coordinates of all parameters"):
    probe(69, "all")


# --- Power iteration -------------------------------------------------------------------------


def test_power_iteration_agrees_with_dense_and_lanczos(x64, tiny):
  sub = cv.select(tiny.params, ("w_rec",))
  mask = parameter_mask(tiny.params, tiny.spec, ("w_rec",))
  hvp = cv.make_hvp(tiny.loss, tiny.params, tiny.batch, ("w_rec",), mask=mask)
  p = np.asarray(mask["w_rec"]).ravel()
  idx = tiny.w_rec_index
  eigs = np.linalg.eigvalsh(p[:, None] * tiny.hessian[np.ix_(idx, idx)] * p[None])
  largest = eigs[np.argmax(np.abs(eigs))]
  v0 = jax.tree.map(jnp.multiply, mask, cv.rademacher_like(jax.random.key(5), sub))

  @jax.jit
  def run(v):
    return (
      cv.power_iteration(hvp, v, tol=1e-13, max_matvecs=5000),
      cv.lanczos_top_k(hvp, v, 25, 1).eigenvalues[0],
      cv.power_iteration(hvp, v),  # the reference protocol: 1e-6 absolute, <= 500 HVPs
    )

  ref, lanczos, protocol = run(v0)
  np.testing.assert_allclose(ref.magnitude, abs(largest), rtol=1e-8)
  np.testing.assert_allclose(ref.rayleigh, largest, rtol=1e-8)
  np.testing.assert_allclose(lanczos, eigs[-1], rtol=1e-10)
  assert 2 <= int(protocol.num_matvecs) <= 500
  np.testing.assert_allclose(protocol.magnitude, abs(largest), rtol=1e-4)


def test_power_iteration_reports_magnitude_and_sign(x64):
  a = matrix_with_eigenvalues(np.concatenate([[-6.0, 3.0], np.linspace(-2.0, 2.0, 18)]))
  res, capped = jax.jit(
    lambda v: (
      cv.power_iteration(lambda x: a @ x, v, tol=1e-12, max_matvecs=2000),
      cv.power_iteration(lambda x: a @ x, v, tol=0.0, max_matvecs=7),
    )
  )(jnp.ones(20))
  np.testing.assert_allclose([res.magnitude, res.rayleigh], [6.0, -6.0], rtol=1e-9)
  assert int(capped.num_matvecs) == 7


# --- Trace, density, flatness ----------------------------------------------------------------


def test_hutchinson_trace_within_clt_bound(x64, tiny):
  h = tiny.hessian
  num_probes = 300
  hvp = cv.make_hvp(tiny.loss, tiny.params, tiny.batch)
  est = jax.jit(lambda k: cv.hutchinson_trace(hvp, k, tiny.params, num_probes))(jax.random.key(7))
  sd = np.sqrt(2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / num_probes)
  assert abs(float(est.estimate) - np.trace(h)) <= 4 * sd
  assert 0.5 * sd < float(est.stderr) < 2 * sd  # the reported error bar is calibrated


def test_slq_density_matches_true_spectrum(x64, tiny):
  params = tiny.params
  h = tiny.hessian
  eigs = np.linalg.eigvalsh(h)
  hvp = cv.make_hvp(tiny.loss, params, tiny.batch)
  # Gauss quadrature from the unit probe v: sum_j tau_j theta_j^p = v^T H^p v for
  # p < 2m. Weights = squared FIRST components of T's eigenvectors make this hold.
  v = cv.rademacher_like(jax.random.key(0), params)
  vhat = np.asarray(ravel_pytree(v)[0]) / np.sqrt(74)
  sigma = (eigs[-1] - eigs[0]) / 15
  grid = jnp.linspace(eigs[0] - 5 * sigma, eigs[-1] + 5 * sigma, 400)

  @jax.jit
  def run(v, key):
    k1, k2 = jax.random.split(key)
    return (
      [cv.lanczos_tridiag(hvp, v, m) for m in (74, 12)],
      cv.slq_density(hvp, k1, params, 30, 20, sigma=sigma, grid=grid),
      cv.slq_density(hvp, k2, params, 20, 4),  # default grid and width
    )

  tridiags, dens, auto = run(v, jax.random.key(1))
  scale = np.abs(eigs).max()
  for res in tridiags:
    nodes, weights = cv.gauss_quadrature(res.alphas, res.betas)
    for power in range(8):
      moment = vhat @ np.linalg.matrix_power(h / scale, power) @ vhat
      np.testing.assert_allclose(np.sum(weights * (nodes / scale) ** power), moment, atol=1e-11)
  np.testing.assert_allclose(nodes[-1], eigs[-1], rtol=1e-6)  # 12 steps: the extremes converge
  # SLQ with fewer steps, averaged over probes, vs the true density smoothed alike.
  np.testing.assert_allclose(np.sum(dens.weights, axis=1), 1.0, rtol=1e-12)
  assert abs(np.trapezoid(dens.density, dens.grid) - 1.0) < 1e-4
  truth = np.asarray(cv.smooth_density(jnp.asarray(eigs), jnp.full(74, 1 / 74), grid, sigma))
  err = np.abs(np.asarray(dens.density) - truth)
  assert err.max() < 0.3 * truth.max() and err.mean() < 0.05 * truth.max()
  # The default grid and width also integrate to one.
  assert abs(np.trapezoid(auto.density, auto.grid) - 1.0) < 1e-3


def test_relative_flatness_equals_dense_formula(x64, tiny):
  idx = tiny.w_rec_index
  h = tiny.hessian[np.ix_(idx, idx)]
  w = tiny.params["w_rec"]
  kappa = float(cv.relative_flatness_dense(h, w))
  # The same sum written out over rows s, s' (weights into neurons s and s').
  hb = np.asarray(h).reshape(6, 6, 6, 6)
  wn = np.asarray(w)
  explicit = sum(wn[s] @ wn[t] * np.trace(hb[s, :, t, :]) for s in range(6) for t in range(6))
  np.testing.assert_allclose(kappa, explicit, rtol=1e-12)
  hvp = cv.make_hvp(tiny.loss, tiny.params, tiny.batch, ("w_rec",))
  hvp_w = lambda v: hvp({"w_rec": v})["w_rec"]
  num_probes = 200
  m, est = jax.jit(
    lambda k: (
      operator_matrix(cv.flatness_operator(hvp_w, w), jnp.zeros((6, 6))),
      cv.relative_flatness(hvp_w, w, k, num_probes),
    )
  )(jax.random.key(9))
  m = np.asarray(m)
  np.testing.assert_allclose(m, m.T, atol=1e-12 * np.abs(m).max())
  np.testing.assert_allclose(np.trace(m), kappa, rtol=1e-10)
  sd = np.sqrt(2 * (np.sum(m**2) - np.sum(np.diag(m) ** 2)) / num_probes)
  assert abs(float(est.estimate) - kappa) <= 4 * sd


# --- Inside the compiled training run --------------------------------------------------------


def test_curvature_probe_in_compiled_training():
  config = get_config("smoke")
  config.num_steps = 200
  config.curvature.every = config.eval_every
  config.curvature.lanczos_steps = 20
  config.curvature.batch_size = 64
  task = tasks.make("seq_mnist", config.task_options)
  state, metrics = jax.jit(jax.vmap(make_train(config, task)))(seed_keys(config))
  num_evals = len(range(0, config.num_steps + 1, config.eval_every))
  for name in ("lambda_max", "lambda_2", "lambda_3"):
    assert metrics[name].shape == (config.num_seeds, num_evals), name
    assert np.all(np.isfinite(metrics[name])), name
  assert np.all(metrics["lambda_max"] >= metrics["lambda_2"])
  # A direct Lanczos on the final parameters: another start vector, more steps.
  spec = model_spec(config, task)
  loss = make_total_loss(spec, task, config.reg_l2)
  batch = curvature_batch(task, config.curvature.batch_size)

  def direct(params, key):
    mask = parameter_mask(params, spec, ("w_rec",))
    hvp = cv.make_hvp(loss, params, batch, ("w_rec",), mask=mask)
    v0 = {"w_rec": mask["w_rec"] * jax.random.normal(key, mask["w_rec"].shape)}
    return cv.lanczos_top_k(hvp, v0, 60, 1).eigenvalues[0]

  keys = jax.random.split(jax.random.key(11), config.num_seeds)
  expected = jax.jit(jax.vmap(direct))(state.params, keys)
  np.testing.assert_allclose(metrics["lambda_max"][:, -1], expected, rtol=2e-3)


def test_curvature_probe_with_a_tolerance_reports_its_steps(x64, tiny):
  config = base_config()
  config.eval_every = 100
  config.curvature.every = 100
  config.curvature.lanczos_steps = 30
  config.curvature.batch_size = 6
  config.curvature.lanczos_tol = 1e-5
  task = Task("tiny", 3, 2, 5, "xent", None, {"val": tiny.batch}, "none")
  probe = cv.make_curvature_probe(config, tiny.spec, task, tiny.loss)
  out = jax.jit(lambda: probe(tiny.params, {}, jax.random.key(1), jnp.int32(100)))()
  steps = int(out["lanczos_steps_taken"])
  assert 3 <= steps < 30
  first6 = Batch(*(x[:6] for x in tiny.batch))
  idx = tiny.w_rec_index
  h = np.asarray(dense_hessian(tiny.loss, tiny.params, first6))[np.ix_(idx, idx)]
  free = np.asarray(rnn.recurrent_mask(tiny.spec, jnp.float64)).ravel()
  eigs = np.linalg.eigvalsh(free[:, None] * h * free[None])[::-1][:3]
  top = [out["lambda_max"], out["lambda_2"], out["lambda_3"]]
  np.testing.assert_allclose(top, eigs, rtol=0, atol=1e-5 * eigs[0])


def test_curvature_probe_against_dense_and_off_schedule(x64, tiny):
  config = base_config()
  config.eval_every = 100
  config.curvature.every = 200
  config.curvature.lanczos_steps = 30  # all 30 free synapses: exact eigenvalues
  config.curvature.batch_size = 6
  config.curvature.trace_probes = 3
  config.curvature.flatness_probes = 3
  config_all = config.copy_and_resolve_references()
  config_all.curvature.params = "all"
  config_all.curvature.lanczos_steps = 68  # 74 parameters, 6 of them masked autapses
  task = Task(
    name="tiny",
    n_in=3,
    n_out=2,
    n_steps=5,
    objective="xent",
    sample_train=None,
    eval_sets={"val": tiny.batch},
    shift="none",
  )
  probes = [cv.make_curvature_probe(c, tiny.spec, task, tiny.loss) for c in (config, config_all)]
  run = jax.jit(lambda step: [p(tiny.params, {}, jax.random.key(1), step) for p in probes])
  off, _ = run(jnp.asarray(100, jnp.int32))
  on, on_all = run(jnp.asarray(400, jnp.int32))
  names = {"lambda_max", "lambda_2", "lambda_3", "hessian_trace", "relative_flatness"}
  assert set(off) == names and all(np.isnan(v) for v in off.values())
  # On schedule: the Hessian restricted to free synapses, on the first 6 examples.
  first6 = Batch(*(x[:6] for x in tiny.batch))
  h = np.asarray(dense_hessian(tiny.loss, tiny.params, first6))
  free = np.ones(74)
  free[tiny.w_rec_index] = np.asarray(rnn.recurrent_mask(tiny.spec, jnp.float64)).ravel()
  h = free[:, None] * h * free[None]
  idx = tiny.w_rec_index
  for out, hess in ((on, h[np.ix_(idx, idx)]), (on_all, h)):
    eigs = np.linalg.eigvalsh(hess)[::-1][:3]
    top = [out["lambda_max"], out["lambda_2"], out["lambda_3"]]
    np.testing.assert_allclose(top, eigs, rtol=1e-8)

  # Hutchinson metrics (3 probes) within 4 standard deviations of the dense values.
  def within_clt(estimate, m):
    sd = np.sqrt(2 * (np.sum(m**2) - np.sum(np.diag(m) ** 2)) / 3)
    assert abs(float(estimate) - np.trace(m)) <= 4 * sd

  within_clt(on["hessian_trace"], h[np.ix_(idx, idx)])
  within_clt(on_all["hessian_trace"], h)
  w = np.asarray(tiny.params["w_rec"])
  k = np.kron(w, np.eye(6))  # vec(W Y) = (W kron I) vec(Y), row-major
  m = k.T @ h[np.ix_(idx, idx)] @ k
  np.testing.assert_allclose(np.trace(m), cv.relative_flatness_dense(h[np.ix_(idx, idx)], w))
  within_clt(on["relative_flatness"], m)
  within_clt(on_all["relative_flatness"], m)
  # Sizes are checked before anything compiles.
  config.curvature.lanczos_steps = 37
  with pytest.raises(ValueError, match="Hessian dimension"):
    cv.make_curvature_probe(config, tiny.spec, task, tiny.loss)
  config.curvature.lanczos_steps = 30
  config.curvature.batch_size = 9
  with pytest.raises(ValueError, match="validation examples"):
    cv.make_curvature_probe(config, tiny.spec, task, tiny.loss)
