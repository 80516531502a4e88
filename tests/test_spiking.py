"""Spiking networks: binary spikes, surrogate BPTT == RTRL, e-prop == its published traces,
the two curvature definitions, spike encodings, and learning on a tiny spiking task.

Numerics in float64 on tiny networks (N = 6, N_in = 3, N_out = 2, T = 12, B = 2)
whose weights are scaled so that units spike and sit near threshold; every
comparison first checks that spikes and non-zero pseudo-derivatives occur.
Random numbers come from numpy (JAX's PRNG costs compile time on CPU).
"""

import functools

from credit.curvature import spiking as spiking_curvature
from credit.models import lif
from credit.rules import spiking as rules
from credit.tasks import spike_encoding
from credit.tasks.base import Batch

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from tests.conftest import assert_trees_close, relative_error, xent_task

N, N_IN, N_OUT, T, B = 6, 3, 2, 12, 2
KINDS = {  # frac_adaptive, n_refractory, kappa
  "lif": (0.0, 0, 0.6),
  "alif": (0.5, 0, 0.6),
  "alif_refractory": (0.5, 2, 0.6),
  "alif_no_filter": (0.5, 1, 0.0),
}


@functools.cache
def make_net(kind="alif", surrogate="triangle", dale=False):
  """A spiking network, its trajectory and random output errors (call under ``x64``)."""
  frac_adaptive, n_ref, kappa = KINDS[kind]
  spec = lif.LIFSpec(
    N_IN,
    N,
    N_OUT,
    alpha=0.7,
    v_th=1.0,
    kappa=kappa,
    n_refractory=n_ref,
    frac_adaptive=frac_adaptive,
    beta=0.5,
    rho=0.8,
    surrogate=lif.Surrogate(surrogate),
    dale=dale,
    frac_exc=0.67,
  )
  rng = np.random.default_rng(7)
  w_rec = rng.normal(0.0, 1.2, (N, N)) * (1.0 - np.eye(N))
  params = {
    "w_in": jnp.asarray(rng.normal(1.2, 1.0, (N, N_IN))),
    "w_rec": jnp.asarray(w_rec),
    "b": jnp.asarray(rng.normal(0.3, 0.2, N)),
    "w_out": jnp.asarray(rng.normal(0.0, 1.0, (N_OUT, N))),
    "b_out": jnp.asarray(rng.normal(0.0, 0.1, N_OUT)),
  }
  params = lif.project(params, spec)
  x = jnp.asarray((rng.random((B, T, N_IN)) < 0.6).astype(np.float64))
  errors = jnp.asarray(rng.normal(0.0, 1.0, (B, T, N_OUT)))
  traj = lif.forward(params, spec, x)
  z, psi = np.asarray(traj.z), np.asarray(traj.psi)
  assert 0.1 < z.mean() < 0.9, "the test network must spike, but not always"
  assert np.any((psi > 0) & (z == 0)) and np.any((psi > 0) & (z == 1))
  return spec, params, x, errors, traj


def linear_loss(spec, params, x, errors):
  """``sum_t e_t . y_t``: its gradient is the rules' gradient for output errors ``e``."""
  return jnp.sum(errors * lif.outputs(params, spec, x))


# ---------------------------------------------------------------------------------------
# Independent references, written from the equations (no code shared with the library).


def reference_forward(params, spec, x, stop_recurrent=False, stop_reset=False):
  """A step-by-step Python loop of the LIF/ALIF equations; returns ``y [B, T, N_out]``.

  ``stop_recurrent`` / ``stop_reset`` detach ``z_{t-1}`` where it enters through
  ``W_rec`` / the reset: the "autodiff" form of e-prop (Bellec et al. 2020's
  hardcoded-vs-autodiff check).
  """
  spike = lif.spike_function(spec.surrogate)
  w_rec = params["w_rec"] * (1.0 - jnp.eye(N))
  beta = np.array([spec.beta if i < spec.n_adaptive else 0.0 for i in range(N)])
  v = a = z = zbar = jnp.zeros((x.shape[0], N))
  ref = np.zeros((x.shape[0], N), int)
  ys = []
  for t in range(x.shape[1]):
    z_rec = jax.lax.stop_gradient(z) if stop_recurrent else z
    z_reset = jax.lax.stop_gradient(z) if stop_reset else z
    current = z_rec @ w_rec.T + x[:, t] @ params["w_in"].T + params["b"]
    v = spec.alpha * v + (1 - spec.alpha) * current - spec.v_th * z_reset
    a = spec.rho * a + z
    dist = (v - spec.v_th - beta * a) / spec.v_th
    free = ref == 0
    z = spike(dist) * free
    fired = np.asarray(jax.lax.stop_gradient(dist)) > 0
    ref = np.where(fired & free, spec.n_refractory, np.maximum(ref - 1, 0))
    zbar = spec.kappa * zbar + (1 - spec.kappa) * z
    ys.append(zbar @ params["w_out"].T + params["b_out"])
  return jnp.stack(ys, axis=1)


def rtrl_grads(params, spec, traj, errors):
  """Real-time recurrent learning with the influence tensors of ``v``, ``a``, ``z``, ``zbar``.

  ``M^v_t = alpha M^v_{t-1} + (1-alpha)(W_rec M^z_{t-1} + I (x) zhat_t) - v_th M^z_{t-1}``,
  ``M^a_t = rho M^a_{t-1} + M^z_{t-1}``, ``M^z_t = psi_t (M^v_t - beta M^a_t)``,
  ``M^zbar_t = kappa M^zbar_{t-1} + (1-kappa) M^z_t``; ``g = sum_t (W_out^T e_t) . M^zbar_t``.
  """
  w_rec = np.asarray(params["w_rec"]) * (1.0 - np.eye(N))
  w_out = np.asarray(params["w_out"])
  beta = np.array([spec.beta if i < spec.n_adaptive else 0.0 for i in range(N)])
  z, psi, x = (np.asarray(v) for v in (traj.z, traj.psi, traj.x))
  m = N + N_IN + 1
  g = np.zeros((N, m))
  for b in range(x.shape[0]):
    mv, ma, mz, mzbar = (np.zeros((N, N, m)) for _ in range(4))  # [k, i, j]
    z_prev = np.zeros(N)
    for t in range(x.shape[1]):
      zhat = np.concatenate([z_prev, x[b, t], [1.0]])
      immediate = np.zeros((N, N, m))
      immediate[np.arange(N), np.arange(N)] = zhat
      mv = (
        spec.alpha * mv
        + (1 - spec.alpha) * (np.einsum("kp,pij->kij", w_rec, mz) + immediate)
        - spec.v_th * mz
      )
      ma = spec.rho * ma + mz
      mz = psi[b, t][:, None, None] * (mv - beta[:, None, None] * ma)
      mzbar = spec.kappa * mzbar + (1 - spec.kappa) * mz
      g += np.einsum("k,kij->ij", w_out.T @ np.asarray(errors[b, t]), mzbar)
      z_prev = z[b, t]
  return packed(g)


def published_traces(spec, traj, adaptive=True):
  """e-prop's eligibility traces ``e_t [B, T, N, m]``, step by step (Bellec et al. 2020,
  Methods, eqs. 24-25), with this model's input factor ``(1 - alpha)`` and without the
  reset in the trace:

  ``eps^v_t = alpha eps^v_{t-1} + (1-alpha) zhat_t``,
  ``eps^a_t = psi_{t-1} eps^v_{t-1} + (rho - beta psi_{t-1}) eps^a_{t-1}``,
  ``e_t = psi_t (eps^v_t - beta eps^a_t)``; ``adaptive=False`` drops ``eps^a`` (leak only).
  """
  beta = np.array([spec.beta if (adaptive and i < spec.n_adaptive) else 0.0 for i in range(N)])
  z, psi, x = (np.asarray(v) for v in (traj.z, traj.psi, traj.x))
  m = N + N_IN + 1
  traces = np.zeros(x.shape[:2] + (N, m))
  for b in range(x.shape[0]):
    eps_v, eps_a = np.zeros((N, m)), np.zeros((N, m))
    z_prev, psi_prev = np.zeros(N), np.zeros(N)
    for t in range(x.shape[1]):
      zhat = np.concatenate([z_prev, x[b, t], [1.0]])
      eps_a = psi_prev[:, None] * eps_v + (spec.rho - beta * psi_prev)[:, None] * eps_a
      eps_v = spec.alpha * eps_v + (1 - spec.alpha) * zhat[None, :]
      traces[b, t] = psi[b, t][:, None] * (eps_v - beta[:, None] * eps_a)
      z_prev, psi_prev = z[b, t], psi[b, t]
  return traces


def packed(g):
  return {"w_rec": g[:, :N] * (1.0 - np.eye(N)), "w_in": g[:, N:-1], "b": g[:, -1]}


def published_eprop(spec, traj, errors, feedback, adaptive=True):
  """``g = sum_t L_t ebar_t``, ``ebar_t = kappa ebar_{t-1} + (1-kappa) e_t``, ``L_t = F e_t``."""
  traces = published_traces(spec, traj, adaptive)
  signal = np.einsum("no,bto->btn", np.asarray(feedback), np.asarray(errors))
  g, e_bar = 0.0, np.zeros_like(traces[:, 0])
  for t in range(traces.shape[1]):
    e_bar = spec.kappa * e_bar + (1 - spec.kappa) * traces[:, t]
    g = g + np.einsum("bn,bnm->nm", signal[:, t], e_bar)
  return packed(g)


def mdgl_reference(spec, traj, errors, w_out, weights):
  """MDGL (MDGL-main NP_mode 3): ``g = sum_t Lt_t e_t + m_{t+1} e_t`` with the readout-filtered
  signal ``Lt_t = (1-kappa) sum_{t' >= t} kappa^(t'-t) W_out^T e_t'`` and
  ``m_{t,p} = (1-alpha) sum_{k != p} W~_kp psi_{t,k} Lt_{t,k}``.
  """
  traces = published_traces(spec, traj)
  q = np.einsum("on,bto->btn", np.asarray(w_out), np.asarray(errors))
  filtered, acc = np.zeros_like(q), np.zeros_like(q[:, 0])
  for t in reversed(range(q.shape[1])):
    acc = q[:, t] + spec.kappa * acc
    filtered[:, t] = (1 - spec.kappa) * acc
  w = np.asarray(weights) * (1.0 - np.eye(N))
  mod = (1 - spec.alpha) * np.einsum("btk,kp->btp", np.asarray(traj.psi) * filtered, w)
  g = 0.0
  for t in range(q.shape[1]):
    signal = filtered[:, t] + (mod[:, t + 1] if t + 1 < q.shape[1] else 0.0)
    g = g + np.einsum("bn,bnm->nm", signal, traces[:, t])
  return packed(g)


def recurrent_part(grads):
  return {k: grads[k] for k in ("w_rec", "w_in", "b")}


def make_rule(name, spec, **options):
  return rules.make(name, spec, ml_collections.ConfigDict(options))


# ---------------------------------------------------------------------------------------
# The model.


@pytest.mark.parametrize("surrogate", lif.SURROGATES)
def test_spikes_are_binary_and_respect_refractoriness(x64, surrogate):
  spec, params, x, _, traj = make_net("alif_refractory", surrogate)
  z = np.asarray(traj.z)
  assert set(np.unique(z)) == {0.0, 1.0}
  for lag in range(1, spec.n_refractory + 1):  # no spike in the n_ref steps after one
    assert not np.any(z[:, lag:] * z[:, :-lag])
  refractory = np.zeros_like(z, bool)
  for lag in range(1, spec.n_refractory + 1):
    refractory[:, lag:] |= z[:, :-lag] > 0
  assert np.all(np.asarray(traj.psi)[refractory] == 0)
  np.testing.assert_allclose(lif.outputs(params, spec, x), traj.y, rtol=1e-13)
  proxy = lif.forward(params, lif.smoothed(spec, 0.5), x).z
  assert np.mean((proxy > 0) & (proxy < 1)) > 0.5  # the proxy's "spikes" are graded


def test_dale_and_no_autapse_are_kept_by_projection(x64):
  spec = lif.LIFSpec(N_IN, N, N_OUT, dale=True, frac_exc=0.5)
  params = lif.init_params(jax.random.key(0), spec, jnp.float64)
  sign = np.where(np.arange(N) < 3, 1.0, -1.0)
  w = np.asarray(params["w_rec"])
  assert np.all(np.diag(w) == 0) and np.all(w * sign[None, :] >= 0)
  bumped = lif.project({**params, "w_rec": params["w_rec"] - 0.5 * sign[None, :]}, spec)
  assert np.all(np.asarray(bumped["w_rec"]) * sign[None, :] >= 0)
  louder = lif.init_params(jax.random.key(0), spec._replace(init_gain=3.0), jnp.float64)
  for k in ("w_in", "w_rec"):
    np.testing.assert_allclose(louder[k], 3.0 * params[k], rtol=1e-15)
  np.testing.assert_array_equal(louder["w_out"], params["w_out"])


@pytest.mark.parametrize("kind", KINDS)
def test_bptt_surrogate_equals_rtrl_and_loop_autodiff(x64, kind):
  spec, params, x, errors, traj = make_net(kind)
  autodiff = jax.grad(lambda p: linear_loss(spec, p, x, errors))(params)
  loop = jax.grad(lambda p: jnp.sum(errors * reference_forward(p, spec, x)))(params)
  trace = make_rule("bptt", spec).grads(params, {}, traj, errors, None)
  assert_trees_close(trace, autodiff, rtol=1e-12)
  assert_trees_close(loop, autodiff, rtol=1e-12)
  assert_trees_close(rtrl_grads(params, spec, traj, errors), recurrent_part(autodiff), rtol=1e-12)


@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_eprop_equals_published_traces(x64, kind, online):
  spec, params, x, errors, traj = make_net(kind)
  got = make_rule("eprop", spec, online=online).grads(params, {}, traj, errors, None)
  want = published_eprop(spec, traj, errors, params["w_out"].T)
  assert_trees_close(recurrent_part(got), want, rtol=1e-12)
  bptt = make_rule("bptt", spec).grads(params, {}, traj, errors, None)
  assert relative_error(recurrent_part(got), recurrent_part(bptt)) > 1e-2  # a real truncation
  readout = ("w_out", "b_out")
  assert_trees_close({k: got[k] for k in readout}, {k: bptt[k] for k in readout}, rtol=1e-13)


@pytest.mark.parametrize("reset", [False, True])
def test_eprop_equals_stop_gradient_autodiff(x64, reset):
  """Hardcoded e-prop == BPTT with ``z_{t-1}`` detached in the recurrent input (and reset)."""
  spec, params, x, errors, traj = make_net("alif_refractory")
  got = make_rule("eprop", spec, reset_in_trace=reset).grads(params, {}, traj, errors, None)

  def oracle(p):
    y = reference_forward(p, spec, x, stop_recurrent=True, stop_reset=not reset)
    return jnp.sum(errors * y)

  assert_trees_close(recurrent_part(got), recurrent_part(jax.grad(oracle)(params)), rtol=1e-12)


@pytest.mark.parametrize("online", [False, True])
def test_random_feedback_and_leak_only(x64, online):
  spec, params, x, errors, traj = make_net("alif")
  for name, adaptive in (("eprop_random", True), ("rflo", False)):
    rule = make_rule(name, spec, online=online, feedback_scale=2.0)
    state = rule.init(jax.random.key(3), params)
    got = rule.grads(params, state, traj, errors, None)
    want = published_eprop(spec, traj, errors, state["feedback"], adaptive=adaptive)
    assert_trees_close(recurrent_part(got), want, rtol=1e-12)


@pytest.mark.parametrize("name", ["mdgl", "mdgl_exact"])
@pytest.mark.parametrize("kind", ["alif", "alif_no_filter"])
def test_mdgl_equals_step_by_step(x64, name, kind):
  from credit.rules import mdgl

  spec, params, x, errors, traj = make_net(kind, dale=True)
  weights = (
    mdgl.type_averaged_weights(params, spec)
    if name == "mdgl"
    else mdgl.exact_one_hop_weights(params, spec)
  )
  want = mdgl_reference(spec, traj, errors, params["w_out"], weights)
  modes = (False, True) if spec.kappa == 0 else (False,)
  for online in modes:
    got = make_rule(name, spec, online=online).grads(params, {}, traj, errors, None)
    assert_trees_close(recurrent_part(got), want, rtol=1e-12)
  eprop = make_rule("eprop", spec).grads(params, {}, traj, errors, None)
  assert relative_error(recurrent_part(eprop), want) > 1e-3  # the modulatory term matters
  if spec.kappa != 0:
    with pytest.raises(ValueError, match="kappa"):
      make_rule(name, spec, online=True)


# ---------------------------------------------------------------------------------------
# Curvature.


def curvature_setup():
  spec, params, x, errors, traj = make_net("alif")
  labels = np.random.default_rng(1).integers(0, N_OUT, B)
  targets = jnp.asarray(np.eye(N_OUT)[labels][:, None, :].repeat(T, axis=1))
  mask = jnp.asarray(np.r_[np.zeros(T - 4), np.ones(4)][None].repeat(B, axis=0))
  return spec, params, Batch(x, targets, mask), xent_task(spec)


def _flat_matrix(op, params):
  """The dense matrix of a pytree operator, one compiled vmap over the basis."""
  flat, unravel = ravel_pytree(params)
  column = lambda e: ravel_pytree(op(unravel(e)))[0]
  return np.asarray(jax.jit(jax.vmap(column))(jnp.eye(flat.size))).T


def test_smoothed_proxy_hvp_equals_dense_hessian_and_finite_differences(x64):
  spec, params, batch, task = curvature_setup()
  loss_fn = spiking_curvature.smoothed_loss(spec, task, 1e-3, temperature=0.3)
  op = spiking_curvature.smoothed_hvp(spec, task, 1e-3, 0.3, params, batch)
  flat, unravel = ravel_pytree(params)
  dense = jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), batch)))(flat)
  matrix = _flat_matrix(op, params)
  np.testing.assert_allclose(matrix, dense, rtol=1e-10, atol=1e-12 * np.abs(dense).max())
  np.testing.assert_allclose(matrix, matrix.T, atol=1e-12 * np.abs(matrix).max())
  # Against central differences of the gradient (independent of forward-over-reverse).
  v = np.random.default_rng(2).normal(size=flat.size)
  grad = jax.jit(jax.grad(lambda f: loss_fn(unravel(f), batch)))
  eps = 1e-5
  fd = (grad(flat + eps * v) - grad(flat - eps * v)) / (2 * eps)
  assert np.linalg.norm(fd - matrix @ v) < 1e-7 * np.linalg.norm(matrix @ v)


def test_surrogate_gradient_jacobian_frozen_equals_finite_differences_and_is_asymmetric(x64):
  spec, params, batch, task = curvature_setup()
  frozen = _flat_matrix(
    spiking_curvature.surrogate_gradient_jvp(spec, task, 0.0, params, batch), params
  )
  symmetric = _flat_matrix(
    spiking_curvature.surrogate_gradient_jvp(
      spec, task, 0.0, params, batch, second_order="surrogate"
    ),
    params,
  )
  scale = np.abs(frozen).max()
  assert np.abs(frozen - frozen.T).max() > 1e-3 * scale
  assert np.abs(symmetric - symmetric.T).max() < 1e-12 * np.abs(symmetric).max()
  # Spikes do not change over +-eps, so the frozen operator is the true derivative of g.
  flat, unravel = ravel_pytree(params)
  loss_fn = spiking_curvature.spiking_loss(spec, task)
  grad = jax.jit(jax.grad(lambda f: loss_fn(unravel(f), batch)))
  v = np.random.default_rng(3).normal(size=flat.size)
  eps = 1e-6
  for sign in (1, -1):
    moved = lif.forward(unravel(flat + sign * eps * v), spec, batch.inputs).z
    np.testing.assert_array_equal(moved, lif.forward(params, spec, batch.inputs).z)
  fd = (grad(flat + eps * v) - grad(flat - eps * v)) / (2 * eps)
  assert np.linalg.norm(fd - frozen @ v) < 1e-7 * np.linalg.norm(frozen @ v)
  with pytest.raises(ValueError, match="second_order"):
    spiking_curvature.surrogate_gradient_jvp(spec, task, 0.0, params, batch, second_order="x")


def _probe_config(definition, temperature=0.3, top_k=1):
  """A spiking run config whose curvature probe measures all ``N (N - 1)`` free directions."""
  from credit.training.config import base_config

  config = base_config("evidence_accumulation", model="lif")
  config.reg_l2 = 0.0
  config.curvature.update(
    dict(
      every=1,
      params="w_rec",
      top_k=top_k,
      lanczos_steps=N * (N - 1),
      batch_size=B,
      spiking_definition=definition,
      temperature=temperature,
    )
  )
  return config


def _w_rec_matrix(loss_fn, params, batch, second=jax.hessian):
  """The dense second derivative of ``loss_fn`` over the free synapses of ``w_rec``."""

  def w_rec_loss(w):
    return loss_fn({**params, "w_rec": w.reshape(N, N)}, batch)

  free = np.flatnonzero((1.0 - np.eye(N)).ravel())
  dense = np.asarray(jax.jit(second(w_rec_loss))(params["w_rec"].ravel()))
  return dense[np.ix_(free, free)]


def test_the_curvature_probe_measures_the_smoothed_proxy(x64):
  """Given the spiking objective, the probe measures the proxy of ``curvature.temperature``:
  its top eigenvalues (Lanczos over ``w_rec``, all N (N - 1) free directions) are those of
  the proxy's dense Hessian restricted to the free synapses."""
  from credit.curvature.tracking import make_curvature_probe

  spec, params, batch, task = curvature_setup()
  task = task._replace(eval_sets={"val": batch})
  config = _probe_config("smoothed", temperature=0.3, top_k=2)
  probe = make_curvature_probe(config, spec, task, spiking_curvature.spiking_loss(spec, task))
  got = jax.jit(probe)(params, {}, jax.random.key(0), jnp.asarray(0))
  assert "jacobian_max_real" not in got
  proxy = spiking_curvature.smoothed_loss(spec, task, 0.0, temperature=0.3)
  want = np.sort(np.linalg.eigvalsh(_w_rec_matrix(proxy, params, batch)))[::-1]
  np.testing.assert_allclose(float(got["lambda_max"]), want[0], rtol=1e-8)
  np.testing.assert_allclose(float(got["lambda_2"]), want[1], rtol=1e-8)


def test_the_curvature_probe_measures_the_surrogate_jacobian(x64):
  """``spiking_definition="surrogate"``: lambda_max is the top eigenvalue of the symmetric part
  of the dense Jacobian of the surrogate gradient (spikes frozen), jacobian_max_real the
  largest real part of its eigenvalues; both differ from the smoothed proxy's."""
  from credit.curvature.tracking import make_curvature_probe

  spec, params, batch, task = curvature_setup()
  task = task._replace(eval_sets={"val": batch})
  config = _probe_config("surrogate")
  probe = make_curvature_probe(config, spec, task, spiking_curvature.spiking_loss(spec, task))
  got = jax.jit(probe)(params, {}, jax.random.key(0), jnp.asarray(0))
  frozen = spec._replace(surrogate=spec.surrogate._replace(second_order="frozen"))
  loss_fn = spiking_curvature.spiking_loss(frozen, task)
  dense = _w_rec_matrix(loss_fn, params, batch, lambda f: jax.jacfwd(jax.grad(f)))
  assert np.abs(dense - dense.T).max() > 1e-3 * np.abs(dense).max()  # not symmetric
  np.testing.assert_allclose(
    float(got["lambda_max"]), np.linalg.eigvalsh((dense + dense.T) / 2).max(), rtol=1e-8
  )
  np.testing.assert_allclose(
    float(got["jacobian_max_real"]), np.linalg.eigvals(dense).real.max(), rtol=1e-6
  )


def test_the_curvature_probe_measures_both_definitions_when_asked(x64):
  """``also_surrogate``: one probe reports the proxy's lambda_max and the surrogate Jacobian's
  symmetric-part lambda_max and largest real eigenvalue, each against its own dense matrix."""
  from credit.curvature.tracking import make_curvature_probe

  spec, params, batch, task = curvature_setup()
  task = task._replace(eval_sets={"val": batch})
  config = _probe_config("smoothed", temperature=0.3)
  config.curvature.also_surrogate = True
  probe = make_curvature_probe(config, spec, task, spiking_curvature.spiking_loss(spec, task))
  got = jax.jit(probe)(params, {}, jax.random.key(0), jnp.asarray(0))
  proxy = spiking_curvature.smoothed_loss(spec, task, 0.0, temperature=0.3)
  smoothed = _w_rec_matrix(proxy, params, batch)
  frozen = spec._replace(surrogate=spec.surrogate._replace(second_order="frozen"))
  loss_fn = spiking_curvature.spiking_loss(frozen, task)
  dense = _w_rec_matrix(loss_fn, params, batch, lambda f: jax.jacfwd(jax.grad(f)))
  sym_max = np.linalg.eigvalsh((dense + dense.T) / 2).max()
  assert abs(sym_max - np.linalg.eigvalsh(smoothed).max()) > 1e-3 * abs(sym_max)  # distinct
  np.testing.assert_allclose(
    float(got["lambda_max"]), np.linalg.eigvalsh(smoothed).max(), rtol=1e-8
  )
  np.testing.assert_allclose(float(got["surrogate_lambda_max"]), sym_max, rtol=1e-8)
  np.testing.assert_allclose(
    float(got["jacobian_max_real"]), np.linalg.eigvals(dense).real.max(), rtol=1e-6
  )


def test_jacobian_extremes_of_the_frozen_operator_match_dense(x64):
  spec, params, batch, task = curvature_setup()
  sub = {"w_rec": params["w_rec"]}
  mask = {"w_rec": jnp.asarray(1.0 - np.eye(N))}
  op = spiking_curvature.surrogate_gradient_jvp(
    spec, task, 0.0, params, batch, ("w_rec",), mask=mask
  )
  v0 = {"w_rec": jnp.asarray(np.random.default_rng(8).normal(size=(N, N))) * mask["w_rec"]}
  got = jax.jit(lambda v: spiking_curvature.jacobian_extremes(op, sub, v, N * (N - 1)))(v0)
  free = np.flatnonzero(np.asarray(mask["w_rec"]).ravel())
  dense = _flat_matrix(op, sub)[np.ix_(free, free)]
  np.testing.assert_allclose(
    got.sym_lambda_max, np.linalg.eigvalsh((dense + dense.T) / 2).max(), rtol=1e-8
  )
  np.testing.assert_allclose(got.max_real, np.linalg.eigvals(dense).real.max(), rtol=1e-6)


def test_second_order_of_the_spike_function():
  """``H(x)^2`` at x = 0.3: ``H'' := 2 psi^2 + 2 H psi'`` (surrogate) or ``2 H psi'`` (frozen)."""
  x = jnp.float32(0.3)
  for second_order, want in (("surrogate", 2 * 0.21**2 - 0.6), ("frozen", -0.6)):
    spike = lif.spike_function(lif.Surrogate("triangle", 0.3, 1.0, second_order))
    f = lambda u, s=spike: s(u) ** 2
    assert float(f(x)) == 1.0
    np.testing.assert_allclose(jax.grad(f)(x), 2 * 0.21, rtol=1e-6)
    np.testing.assert_allclose(jax.jacfwd(jax.grad(f))(x), want, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Encodings, errors, learning.


def test_threshold_crossings_match_a_loop():
  rng = np.random.default_rng(4)
  x = rng.random((2, 9, 3))
  levels = (0.25, 0.5)
  got = np.asarray(spike_encoding.threshold_crossings(jnp.asarray(x), levels))
  want = np.zeros((2, 9, 2, len(levels), 3))
  for b in range(2):
    for t in range(9):
      prev = x[b, t - 1] if t else np.zeros(3)
      for li, lv in enumerate(levels):
        want[b, t, 0, li] = (prev < lv) & (x[b, t] >= lv)
        want[b, t, 1, li] = (prev >= lv) & (x[b, t] < lv)
  np.testing.assert_array_equal(got, want.reshape(2, 9, -1))
  spikes = spike_encoding.poisson_spikes(jax.random.key(0), jnp.full((4000,), 0.5), 0.4)
  assert set(np.unique(spikes)) == {0.0, 1.0} and abs(float(spikes.mean()) - 0.2) < 0.02
  with pytest.raises(ValueError, match="p_max"):
    spike_encoding.poisson_spikes(jax.random.key(0), jnp.ones(3), 1.5)


def test_encode_task_encodes_samples_and_fixed_eval_sets():
  rng = np.random.default_rng(6)
  raw = Batch(jnp.asarray(rng.random((3, 5, 2))), jnp.zeros((3, 5, 2)), jnp.ones((3, 5)))
  task = xent_task(lif.LIFSpec(2, 4, 2))._replace(
    eval_sets={"val": raw, "test": raw}, sample_train=lambda key, n: raw
  )
  levels = (0.3, 0.6)
  encoded = spike_encoding.encode_task(task, spike_encoding.threshold_encoding(levels))
  assert encoded.n_in == 8
  want = spike_encoding.threshold_crossings(raw.inputs, levels)
  np.testing.assert_array_equal(encoded.eval_sets["val"].inputs, want)
  np.testing.assert_array_equal(encoded.sample_train(jax.random.key(1), 3).inputs, want)
  poisson = spike_encoding.encode_task(task, spike_encoding.poisson_encoding(1.0))
  a = poisson.sample_train(jax.random.key(1), 3).inputs
  b = poisson.sample_train(jax.random.key(2), 3).inputs
  assert set(np.unique(a)) <= {0.0, 1.0} and np.any(a != b)  # fresh spikes per batch
  again = spike_encoding.encode_task(task, spike_encoding.poisson_encoding(1.0))
  np.testing.assert_array_equal(again.eval_sets["val"].inputs, poisson.eval_sets["val"].inputs)


def test_encode_task_keeps_the_four_splits_encoding_when_shift_splits_are_added():
  # The single-factor shift sets (test_delay, test_noise) sort between test_clean and train;
  # the four splits every task has keep their encoding keys, so earlier spiking runs'
  # evaluation sets are unchanged.
  rng = np.random.default_rng(7)
  raw = Batch(jnp.asarray(rng.random((3, 5, 2))), jnp.zeros((3, 5, 2)), jnp.ones((3, 5)))
  four = {split: raw for split in ("train", "val", "test", "test_clean")}
  task = xent_task(lif.LIFSpec(2, 4, 2))._replace(eval_sets=four)
  more = task._replace(eval_sets=dict(four, test_delay=raw, test_noise=raw))
  poisson = spike_encoding.poisson_encoding(1.0)
  a = spike_encoding.encode_task(task, poisson).eval_sets
  b = spike_encoding.encode_task(more, poisson).eval_sets
  for split in four:
    np.testing.assert_array_equal(a[split].inputs, b[split].inputs)
  assert not np.array_equal(b["test_delay"].inputs, b["test_noise"].inputs)


def test_spec_from_config():
  model = ml_collections.ConfigDict(
    dict(n_hidden=5, alpha=0.9, n_refractory=2, dale=True, surrogate="sigmoid", surrogate_gamma=0.5)
  )
  want = lif.LIFSpec(
    3, 5, 2, alpha=0.9, n_refractory=2, dale=True, surrogate=lif.Surrogate("sigmoid", 0.5)
  )
  assert lif.spec_from_config(model, 3, 2) == want
  with pytest.raises(ValueError, match="kappa"):
    lif.spec_from_config(ml_collections.ConfigDict(dict(n_hidden=5, kappa=1.5)), 3, 2)


def test_bad_spec_fields_raise():
  with pytest.raises(ValueError, match="surrogate.kind"):
    lif.forward(
      lif.init_params(jax.random.key(0), lif.LIFSpec(2, 3, 1)),
      lif.LIFSpec(2, 3, 1, surrogate=lif.Surrogate("boxcar")),
      jnp.zeros((1, 2, 2)),
    )
  with pytest.raises(ValueError, match="alpha"):
    lif.init_params(jax.random.key(0), lif.LIFSpec(2, 3, 1, alpha=1.0))
  with pytest.raises(ValueError, match="temperature"):
    lif.smoothed(lif.LIFSpec(2, 3, 1), 0.0)
  with pytest.raises(ValueError, match="spiking rule"):
    rules.make("rtrl", lif.LIFSpec(2, 3, 1))


@pytest.mark.parametrize("name", ["bptt", "eprop"])
def test_learns_a_tiny_spiking_classification(name):
  """Two classes cued by which input group fires; the loss falls and both are classified."""
  rng = np.random.default_rng(5)
  n_in, steps, batch = 4, 10, 16
  labels = np.arange(batch) % 2
  rates = np.where((np.arange(n_in)[None, :] < 2) == (labels[:, None] == 0), 0.6, 0.05)
  x = jnp.asarray((rng.random((batch, steps, n_in)) < rates[:, None, :]).astype(np.float32))
  targets = jnp.asarray(np.eye(2, dtype=np.float32)[labels][:, None].repeat(steps, 1))
  mask = jnp.asarray(np.r_[np.zeros(steps - 3), np.ones(3)][None].repeat(batch, 0))
  data = Batch(x, targets, mask)
  spec = lif.LIFSpec(n_in, 12, 2, alpha=0.8, kappa=0.7, frac_adaptive=0.5, beta=0.2, rho=0.9)
  task = xent_task(spec)
  params = lif.init_params(jax.random.key(1), spec._replace(init_gain=2.0))
  rule = make_rule(name, spec)
  opt = optax.adam(0.05)

  @jax.jit
  def step(carry, _):
    p, s = carry
    traj = lif.forward(p, spec, data.inputs)
    loss, errors = jax.value_and_grad(lambda y: task.loss(y, data))(traj.y)
    updates, s = opt.update(rule.grads(p, {}, traj, errors, None), s)
    return (lif.project(optax.apply_updates(p, updates), spec), s), loss

  (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=80)
  y = lif.outputs(params, spec, data.inputs)
  assert float(losses[-1]) < 0.3 * float(losses[0])
  assert float(task.score(y, data)) == 1.0
