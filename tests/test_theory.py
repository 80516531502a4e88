"""Theory (update-map stability, predicted bound), its probe, the remedies and the report."""

from credit import losses, rules, tasks
from credit.curvature.hvp import make_hvp
from credit.curvature.tracking import parameter_mask
from credit.models import rnn
from credit.rules import bptt
from credit.rules.base import GradientRule
from credit.tasks.base import Batch
from credit.theory.stability import (
  alignment_factor,
  arnoldi,
  predicted_bound,
  update_map_spectrum,
)
from credit.theory.tracking import make_theory_probe
from credit.theory.update_map import dense_matrix, jvp_operator, make_rule_grad, make_rule_jvp
from credit.training import optimizers, remedies
from credit.training.config import base_config
from credit.training.objective import loss_and_grads, make_total_loss
from credit.training.train import make_trainer

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.seq_mnist import get_config
from tests.conftest import assert_trees_close, relative_error, xent_task
from tests.conftest import smoke_config as smoke

# ------------------------------------------------------------------ helpers


def tiny_problem(key, *, n=5, n_in=3, n_out=2, t=6, b=4, activation="tanh", alpha=0.7):
  spec = rnn.RNNSpec(n_in=n_in, n_hidden=n, n_out=n_out, alpha=alpha, activation=activation)
  k1, k2, k3, k4 = jax.random.split(key, 4)
  params = rnn.init_params(k1, spec, jnp.float64)
  params["b"] = 0.1 * jax.random.normal(k4, (n,), jnp.float64)
  x = jax.random.normal(k2, (b, t, n_in), jnp.float64)
  labels = jax.random.randint(k3, (b,), 0, n_out)
  mask = jnp.zeros((b, t), jnp.float64).at[:, -2:].set(1.0)
  targets = jnp.broadcast_to(
    jax.nn.one_hot(labels, n_out, dtype=jnp.float64)[:, None], (b, t, n_out)
  )
  return spec, params, Batch(x, targets, mask), xent_task(spec)


def _iterate(a, w0, eta, steps):
  """Distance to the fixed point 0 after ``steps`` of ``w <- w - eta a w`` (inf if it blew up)."""
  with np.errstate(all="ignore"):
    w = np.linalg.matrix_power(np.eye(len(w0)) - eta * np.asarray(a), steps) @ np.asarray(w0)
    norm = float(np.linalg.norm(w))
  return norm if np.isfinite(norm) else np.inf


# ------------------------------------------------------------- the theory


def test_predicted_bound_is_the_divergence_threshold_on_a_quadratic(x64):
  # L = 1/2 w^T H w (minimum w* = 0), a rule g = M H w with M diagonal: c = 0.25 along
  # the sharpest direction e_0.
  eta, c_top = 0.1, 0.25
  m = jnp.asarray([c_top, 1.0, 0.7, 0.5])
  w0 = jnp.ones(4)

  def setup(lam):
    h = jnp.diag(jnp.asarray([lam, 3.0, 2.0, 1.0]))
    hvp = jvp_operator(lambda w: h @ w, jnp.zeros(4))
    jvp = jvp_operator(lambda w: m * (h @ w), jnp.zeros(4))  # the rule's g(w) = M H w
    return h, hvp, jvp

  @jax.jit
  def radius(lam):
    return update_map_spectrum(setup(lam)[2], w0, eta, 4).radius

  _, hvp, jvp = setup(30.0)
  v = jnp.eye(4)[0]
  c = alignment_factor(jvp, hvp, v)
  np.testing.assert_allclose(c, c_top, rtol=1e-14)
  bound = float(predicted_bound(eta, c))
  np.testing.assert_allclose(bound, 2 / (eta * c_top), rtol=1e-14)  # 80, GD's is 20
  for factor in (0.5, 0.95, 0.995, 1.005, 1.05, 1.5):
    h, _, _ = setup(factor * bound)
    final = _iterate(jnp.diag(m) @ h, w0, eta, 3000)
    assert (final < 1e-3) == (factor < 1), (factor, final)
    assert (radius(factor * bound) < 1) == (factor < 1)
  # At a sharpness the rule sustains (0.95 of its bound), exact GD diverges.
  lam = 0.95 * bound
  assert _iterate(np.diag([lam, 3.0, 2.0, 1.0]), w0, eta, 3000) > 1e3
  assert float(predicted_bound(eta, -0.1)) == np.inf


def test_update_map_radius_decides_convergence_for_a_non_normal_rule(x64):
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
  h = q @ np.diag(np.linspace(0.5, 10.0, 8)) @ q.T
  m = np.eye(8) + 0.3 * rng.normal(size=(8, 8))  # not symmetric, does not commute with H
  j = jnp.asarray(m @ h)
  theta = np.linalg.eigvals(m @ h)
  assert np.all(theta.real > 0)
  # The exact threshold: |1 - eta theta| = 1 for the first eigenvalue.
  eta_star = np.min(2 * theta.real / np.abs(theta) ** 2)
  w0 = jnp.asarray(rng.normal(size=8))
  spectrum_radius = jax.jit(lambda eta: update_map_spectrum(lambda v: j @ v, w0, eta, 8).radius)
  for factor in (0.9, 0.99, 1.01, 1.1):
    eta = factor * eta_star
    radius = float(spectrum_radius(eta))
    np.testing.assert_allclose(radius, np.abs(1 - eta * theta).max(), rtol=1e-10)
    final = _iterate(j, w0, eta, 4000)
    assert (radius < 1) == (factor < 1) == (final < 1e-3), (factor, radius, final)


def test_arnoldi_ritz_values_match_numpy_eig(x64):
  rng = np.random.default_rng(1)
  a = rng.normal(size=(12, 12))
  unravel = lambda z: {"x": z[:5], "y": z[5:]}
  ravel = lambda t: jnp.concatenate([t["x"], t["y"]])
  matvec = lambda t: unravel(jnp.asarray(a) @ ravel(t))
  v0 = unravel(jnp.asarray(rng.normal(size=12)))
  res = jax.jit(arnoldi, static_argnums=(0, 2))(matvec, v0, 12)
  q = np.asarray(res.basis)
  np.testing.assert_allclose(q @ q.T, np.eye(12), atol=1e-13)
  np.testing.assert_allclose(q @ a @ q.T, res.hessenberg, atol=1e-12)
  assert np.all(np.tril(np.asarray(res.hessenberg), -2) == 0)
  ritz = np.sort_complex(np.linalg.eigvals(np.asarray(res.hessenberg)))
  np.testing.assert_allclose(ritz, np.sort_complex(np.linalg.eigvals(a)), atol=1e-10)
  eta = 0.3
  spectrum = jax.jit(update_map_spectrum, static_argnums=(0, 3))(matvec, v0, eta, 12)
  mu = np.linalg.eigvals(np.eye(12) - eta * a)
  np.testing.assert_allclose(spectrum.radius, np.abs(mu).max(), rtol=1e-10)
  np.testing.assert_allclose(spectrum.min_real, mu.real.min(), rtol=1e-10)
  # Fewer steps than the dimension: a well-separated extreme eigenvalue converges first.
  d = np.concatenate([[40.0], rng.uniform(-1, 1, 59)])
  p = rng.normal(size=(60, 60))
  b = p @ np.diag(d) @ np.linalg.inv(p)
  top = jax.jit(lambda: update_map_spectrum(lambda v: jnp.asarray(b) @ v, jnp.ones(60), 0.01, 15))()
  np.testing.assert_allclose(top.max_real_rule, 40.0, rtol=1e-6)
  np.testing.assert_allclose(top.min_real, 1 - 0.01 * 40.0, rtol=1e-6)
  # An invariant start space (breakdown) still gives true eigenvalues.
  diag = jnp.arange(1.0, 7.0)
  res = jax.jit(lambda: arnoldi(lambda v: diag * v, jnp.asarray([1.0, 1.0, 0, 0, 0, 0]), 6))()
  np.testing.assert_allclose(
    np.sort(np.linalg.eigvals(np.asarray(res.hessenberg)).real), np.arange(1.0, 7.0), atol=1e-12
  )


def test_arnoldi_restarts_stay_in_the_free_subspace(x64):
  # Issue 11, item 10: J = P(-10 I + u v^T)P on 6x6 synapses, autapses masked. Its
  # Krylov spaces have dimension 2, so Arnoldi restarts; a restart outside the
  # free subspace adds theta = 0 (a spurious mu = 1) from the masked coordinates.
  rng = np.random.default_rng(5)
  p = (1.0 - np.eye(6)).ravel()
  u, v = 0.3 * rng.normal(size=36), 0.3 * rng.normal(size=36)
  j = p[:, None] * (-10.0 * np.eye(36) + np.outer(u, v)) * p[None]
  free = np.flatnonzero(p)
  theta = np.linalg.eigvals(j[np.ix_(free, free)])
  mask = {"w": jnp.asarray(p.reshape(6, 6))}
  matvec = lambda t: {"w": (jnp.asarray(j) @ t["w"].ravel()).reshape(6, 6)}
  v0 = {"w": jnp.asarray(rng.normal(size=(6, 6)))}  # masked inside
  eta = 0.05

  @jax.jit
  def run(v):
    return arnoldi(matvec, v, 30, mask=mask), [
      update_map_spectrum(matvec, v, eta, m, mask=mask) for m in (4, 30)
    ]

  res, spectra = run(v0)
  np.testing.assert_array_equal(np.asarray(res.basis)[:, p == 0], 0.0)
  np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(30), atol=1e-13)
  ritz = np.linalg.eigvals(np.asarray(res.hessenberg))
  np.testing.assert_allclose(np.sort_complex(ritz), np.sort_complex(theta), atol=1e-12)
  for spectrum in spectra:
    np.testing.assert_allclose(spectrum.max_real_rule, theta.real.max(), rtol=1e-13)
    mu = 1 - eta * theta
    np.testing.assert_allclose(spectrum.min_real, mu.real.min(), rtol=1e-13)
    np.testing.assert_allclose(spectrum.radius, np.abs(mu).max(), rtol=1e-13)
    assert np.abs(np.asarray(spectrum.map_eigs) - 1.0).min() > 0.4  # no spurious mu = 1
  with pytest.raises(ValueError, match="num_steps=31 .* free .* 30"):
    arnoldi(matvec, v0, 31, mask=mask)


def test_theory_probe_counts_free_synapses(x64):
  # Issue 11, item 10: the guard counted N^2 = 25 coordinates for N = 5, so 21..25
  # Lanczos or Arnoldi steps reached the 5 masked autapses (theta = 0, a spurious mu = 1).
  spec, params, batch, task = tiny_problem(jax.random.key(0))
  assert spec.no_autapse
  task = task._replace(eval_sets={"val": batch})
  rule = rules.make("bptt", spec)
  total = make_total_loss(spec, task, 0.0)
  for field in ("lanczos_steps", "arnoldi_steps"):
    config = base_config()
    config.theory.update(every=1, batch_size=4, lanczos_steps=20, arnoldi_steps=20)
    make_theory_probe(config, spec, task, rule, total)  # 20 free synapses: allowed
    config.theory[field] = 21
    with pytest.raises(ValueError, match="<= 20, the 20 free coordinates of w_rec"):
      make_theory_probe(config, spec, task, rule, total)


def test_alignment_factor_equals_dense_formula(x64):
  rng = np.random.default_rng(2)
  j = rng.normal(size=(6, 6))
  s = rng.normal(size=(6, 6))
  h = s @ s.T
  v = rng.normal(size=6)
  c = alignment_factor(lambda x: jnp.asarray(j) @ x, lambda x: jnp.asarray(h) @ x, jnp.asarray(v))
  np.testing.assert_allclose(c, (v @ j @ v) / (v @ h @ v), rtol=1e-13)


def test_rule_jacobian_on_a_tiny_rnn(x64):
  spec, params, batch, task = tiny_problem(jax.random.key(0))
  reg = 1e-2
  key = jax.random.key(1)
  subset = ("w_rec",)
  total = make_total_loss(spec, task, reg)
  eprop = rules.make("eprop", spec)
  three = rules.make("three_factor_autodiff", spec)
  # A rule with a known preconditioner: g = M grad D (+ the exact L2 gradient), so
  # J = M H_D + reg I.
  scale = {"w_in": 0.5, "w_rec": 0.25, "b": 2.0, "w_out": 1.0, "b_out": 1.0}
  reference = bptt.make(spec)
  scaled = GradientRule(
    name="scaled",
    init=lambda k, p: {},
    grads=lambda p, s, tr, e, k: {
      n: scale[n] * g for n, g in reference.grads(p, s, tr, e, k).items()
    },
  )

  @jax.jit
  def matrices(params):  # one program: every dense matrix of the test
    point = {"w_rec": params["w_rec"]}
    mask = parameter_mask(params, spec, subset)

    def jac(rule, method="auto", sub=subset, m=mask):
      op = make_rule_jvp(rule, spec, task, reg, params, {}, batch, key, sub, m, method)
      return dense_matrix(op, point if sub else params)

    grad_fn = make_rule_grad(eprop, spec, task, reg, params, {}, batch, key, subset)
    fd = jvp_operator(grad_fn, point, "fd", fd_step=1e-6, mask=mask)
    return dict(
      h=dense_matrix(make_hvp(total, params, batch, subset, mask=mask), point),
      bptt=jac(rules.make("bptt", spec)),
      eprop=jac(eprop),
      eprop_fd=dense_matrix(fd, point),
      three=jac(three),
      scaled=jac(scaled),
      mask=mask["w_rec"],
    )

  m = jax.tree.map(np.asarray, matrices(params))
  # BPTT: J_rule is the Hessian of the total loss.
  np.testing.assert_allclose(m["bptt"], m["h"], atol=1e-12)
  # e-prop (forward mode) against central differences of the rule's gradient function.
  j_eprop = m["eprop"]
  np.testing.assert_allclose(j_eprop, m["eprop_fd"], atol=1e-7 * np.abs(j_eprop).max())
  assert np.abs(j_eprop - m["h"]).max() > 1e-3  # an approximate rule: J != H
  assert np.all(j_eprop[m["mask"].ravel() == 0] == 0)
  # The stop-gradient rule: "auto" picks finite differences (forward mode would give the
  # stopped h_{t-1} a zero tangent), which recover e-prop's J (the same rule here).
  np.testing.assert_allclose(m["three"], j_eprop, atol=1e-6 * np.abs(j_eprop).max())
  # The preconditioned rule on W_rec: J = 0.25 (H - reg P) + reg P, P the free synapses.
  p_free = np.diag(m["mask"].ravel())
  np.testing.assert_allclose(m["scaled"], 0.25 * (m["h"] - reg * p_free) + reg * p_free, atol=1e-12)


# ------------------------------------------------------------- remedies


def test_schedule_gives_the_intended_learning_rates():
  config = smoke(num_steps=100, **{"optimizer.learning_rate": 0.02})
  assert optimizers.schedule(config) is None  # remedies off: plain float learning rate
  config.remedies.lr_scale = 1.5
  config.remedies.late_lr_factor = 4.0
  config.remedies.late_lr_start = 0.25  # a fraction: step 25
  sched = optimizers.schedule(config)
  expected = {0: 0.03, 24: 0.03, 25: 0.12, 99: 0.12}
  for count, lr in expected.items():
    np.testing.assert_allclose(sched(jnp.asarray(count)), lr, rtol=1e-6)
  config.remedies.late_lr_start = 40.0  # >= 1: a step count
  assert float(optimizers.schedule(config)(39)) == pytest.approx(0.03)
  assert float(optimizers.schedule(config)(40)) == pytest.approx(0.12)
  # The optimizer uses it: SGD's update for a unit gradient is -lr(count).
  opt = optimizers.make_optimizer(config.optimizer, optimizers.schedule(config))
  state = opt.init(jnp.zeros(()))
  for count in range(45):
    update, state = opt.update(jnp.ones(()), state)
    assert float(-update) == pytest.approx(expected_lr := (0.12 if count >= 40 else 0.03)), (
      count,
      expected_lr,
    )
  with pytest.raises(ValueError, match="late_lr_start >= 1 is a step count"):
    config.remedies.late_lr_start = 40.5
    make_trainer(config)


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"remedies.lr_scale": 0.0}, "remedies.lr_scale must be > 0"),
    ({"remedies.weight_noise_std": -1.0}, "remedies.weight_noise_std must be >= 0"),
    (
      {"remedies.late_lr_factor": 2.0, "remedies.late_lr_start": 500.0},
      "outside (0, num_steps=300]",
    ),
    ({"theory.every": 150}, "theory.every must be 0 (off) or a positive multiple"),
    ({"theory.jvp": "reverse"}, "theory.jvp must be one of"),
    ({"theory.every": 100, "theory.top_k": 30}, "theory.top_k (30) must be at most"),
  ],
)
def test_bad_remedy_and_theory_fields_are_named(overrides, message):
  with pytest.raises(ValueError) as err:
    make_trainer(smoke(**overrides))
  assert message in str(err.value)


@pytest.fixture(scope="module")
def tiny_task():
  config = smoke(dtype="float64")
  with jax.enable_x64(True):
    return tasks.make("seq_mnist", config.task_options, jnp.float64)


def _tiny_config(**overrides):
  fields = {
    "dtype": "float64",
    "num_steps": 4,
    "eval_every": 2,
    "num_seeds": 1,
    "model.n_hidden": 8,
    "batch_size": 16,
  }
  return smoke(**{**fields, **overrides})


def test_lr_scale_scales_one_sgd_step_exactly(x64, tiny_task):
  base = make_trainer(_tiny_config(), tiny_task)
  scaled = make_trainer(_tiny_config(**{"remedies.lr_scale": 2.5}), tiny_task)
  key = jax.random.key(3)
  s0 = base.init(key)
  d_base = jax.tree.map(jnp.subtract, base.run_chunk(s0, 1).params, s0.params)
  d_scaled = jax.tree.map(jnp.subtract, scaled.run_chunk(scaled.init(key), 1).params, s0.params)
  assert_trees_close(d_scaled, jax.tree.map(lambda d: 2.5 * d, d_base), rtol=1e-12)


def test_weight_noise_off_is_identity_and_on_perturbs_by_the_rule_jacobian(x64):
  # tanh: the gradient is smooth in the weights, so its first-order change is J eps.
  spec, params, batch, task = tiny_problem(jax.random.key(3))
  rule, reg, key = rules.make("eprop", spec), 1e-2, jax.random.key(2)
  args = (rule, spec, task, reg, params, {}, batch, key)
  clean = loss_and_grads(*args)
  off = remedies.noisy_loss_and_grads(*args, jax.random.key(5), remedies.Noise(0.0, 0.0))
  assert_trees_close(off, clean, rtol=0.0)
  assert not remedies.Noise.from_config(get_config("smoke")).active  # default: plain step

  sigma, draws = 1e-5, 400
  eps = jax.vmap(lambda k: remedies.weight_noise(k, params, spec, sigma))(
    jax.random.split(jax.random.key(7), 4000)
  )
  for name in ("w_in", "w_rec", "w_out"):
    x = np.asarray(eps[name])
    if name == "w_rec":
      assert np.all(x[:, np.eye(spec.n_hidden, dtype=bool)] == 0)
      x = x[:, ~np.eye(spec.n_hidden, dtype=bool)]
    assert abs(x.mean()) < 5 * sigma / np.sqrt(x.size)
    assert abs(x.std() / sigma - 1) < 0.02
  assert np.all(np.asarray(eps["b"]) == 0) and np.all(np.asarray(eps["b_out"]) == 0)

  # To first order the noisy gradient is g + J_rule eps: mean g, covariance
  # sigma^2 J P J^T (P: the perturbed coordinates).
  jvp = make_rule_jvp(rule, spec, task, reg, params, {}, batch, key)

  @jax.jit
  def deviations(keys):
    def one(k):
      _, g = remedies.noisy_loss_and_grads(*args, k, remedies.Noise(sigma, 0.0))
      e = remedies.weight_noise(jax.random.split(k)[0], params, spec, sigma)
      return jax.tree.map(jnp.subtract, g, clean[1]), jvp(e)

    return jax.vmap(one)(keys)

  dev, linear = deviations(jax.random.split(jax.random.key(8), draws))
  assert relative_error(dev, linear) < 1e-3
  j = np.asarray(jax.jit(dense_matrix, static_argnums=0)(jvp, params))
  support = remedies.weight_noise(jax.random.key(0), params, spec, 1.0)
  p_diag = np.concatenate([np.ravel(np.asarray(v) != 0) for v in jax.tree.leaves(support)])
  u = np.random.default_rng(0).normal(size=j.shape[0])
  proj = (
    np.stack([np.concatenate([np.ravel(x[i]) for x in jax.tree.leaves(dev)]) for i in range(draws)])
    @ u
  )
  expected_var = sigma**2 * np.sum((j.T @ u) ** 2 * p_diag)
  assert abs(proj.var() / expected_var - 1) < 0.25  # 400 draws: sd ~7%
  assert abs(proj.mean()) < 4 * np.sqrt(expected_var / draws)


def test_activity_noise_enters_the_forward_pass_as_specified(x64):
  spec, params, batch, task = tiny_problem(jax.random.key(4), activation="relu", alpha=0.6)
  xi = 0.3 * jax.random.normal(
    jax.random.key(5), batch.inputs.shape[:2] + (spec.n_hidden,), jnp.float64
  )
  traj = rnn.forward(params, spec, batch.inputs, noise=xi)
  # A manual loop: u_t = W_rec h_{t-1} + W_in x_t + b + xi_t.
  p = {k: np.asarray(v) for k, v in params.items()}
  w_rec = p["w_rec"] * (1 - np.eye(spec.n_hidden))
  h = np.zeros((batch.inputs.shape[0], spec.n_hidden))
  for t in range(batch.inputs.shape[1]):
    u = h @ w_rec.T + np.asarray(batch.inputs[:, t]) @ p["w_in"].T + p["b"] + np.asarray(xi[:, t])
    h = (1 - spec.alpha) * h + spec.alpha * np.maximum(u, 0)
    np.testing.assert_allclose(traj.u[:, t], u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(traj.h[:, t], h, rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(traj.dphi, (np.asarray(traj.u) > 0).astype(float))
  assert_trees_close(
    rnn.forward(params, spec, batch.inputs, noise=None),
    rnn.forward(params, spec, batch.inputs),
    rtol=0.0,
  )
  # The training gradient under activity noise is the gradient of the noisy network.
  noise_key = jax.random.key(6)
  std = 0.3
  for name in ("bptt", "eprop"):
    rule = rules.make(name, spec)

    @jax.jit
    def compare(params, rule=rule):
      loss, g = remedies.noisy_loss_and_grads(
        rule,
        spec,
        task,
        1e-2,
        params,
        {},
        batch,
        jax.random.key(0),
        noise_key,
        remedies.Noise(0.0, std),
      )
      xi = remedies.activity_noise(jax.random.split(noise_key)[1], batch, spec, std, jnp.float64)
      noisy = rnn.forward(params, spec, batch.inputs, noise=xi)
      errors = jax.grad(lambda y: task.loss(y, batch))(noisy.y)
      want = jax.tree.map(
        jnp.add,
        rule.grads(params, {}, noisy, errors, jax.random.key(0)),
        losses.l2_gradient(params, 1e-2),
      )
      clean = loss_and_grads(rule, spec, task, 1e-2, params, {}, batch, jax.random.key(0))[1]
      return loss, task.loss(noisy.y, batch), g, want, clean

    loss, want_loss, g, want, clean = compare(params)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-13)
    assert_trees_close(g, want, rtol=1e-11)
    assert relative_error(g, clean) > 1e-2


# ------------------------------------------------------------- the probe


def test_theory_probe_for_an_exact_rule_has_unit_alignment(x64, tiny_task):
  config = _tiny_config(
    **{
      "theory.every": 2,
      "theory.batch_size": 32,
      "theory.lanczos_steps": 30,
      "theory.arnoldi_steps": 30,
      "num_steps": 8,
      "remedies.late_lr_factor": 3.0,
      "remedies.late_lr_start": 4.0,
    }
  )
  trainer = make_trainer(config, tiny_task)
  state = trainer.init(jax.random.key(0))
  evaluate = jax.jit(trainer.evaluate)
  m = evaluate(state, jnp.asarray(0, jnp.int32))
  # The probe's eta follows the schedule; off its schedule it reports NaN.
  late = evaluate(state, jnp.asarray(6, jnp.int32))
  np.testing.assert_allclose(late["theory_eta"], 3 * config.optimizer.learning_rate, rtol=1e-12)
  np.testing.assert_allclose(
    late["predicted_lambda_bound"] * 3, m["predicted_lambda_bound"], rtol=1e-6
  )
  assert np.isnan(evaluate(state, jnp.asarray(3, jnp.int32))["theory_c"])
  # The measured Hessian: exact loss, W_rec, free synapses, the first 32 validation examples.
  val = jax.tree.map(lambda x: x[:32], tiny_task.eval_sets["val"])
  mask = parameter_mask(state.params, trainer.spec, ("w_rec",))
  hess = jax.jit(dense_matrix, static_argnums=0)(
    make_hvp(trainer.total_loss, state.params, val, ("w_rec",), mask=mask),
    {"w_rec": state.params["w_rec"]},
  )
  np.testing.assert_allclose(m["theory_lambda_max"], np.linalg.eigvalsh(hess)[-1], rtol=1e-8)
  np.testing.assert_allclose(m["theory_c"], 1.0, rtol=1e-8)
  np.testing.assert_allclose(m["theory_align_cos"], 1.0, rtol=1e-12)
  np.testing.assert_allclose(
    m["predicted_lambda_bound"], 2 / config.optimizer.learning_rate, rtol=1e-8
  )
  # BPTT's J is H: Arnoldi's top Ritz value is Lanczos's top eigenvalue.
  np.testing.assert_allclose(m["rule_jac_max_real"], m["theory_lambda_max"], rtol=1e-6)


# ------------------------------------------------------------- the report

REPRO_CONFIG = """
import ml_collections
from configs.seq_mnist import get_config as run_config


def get_config(arg=None):
  base = run_config("smoke")
  base.model.n_hidden = 8
  base.batch_size = 32
  base.num_steps, base.eval_every, base.num_seeds = 10, 5, 3
  base.theory.update(dict(every=10, batch_size=32, lanczos_steps=4, arnoldi_steps=4))
  sweep = ml_collections.ConfigDict(dict(
      name="tiny", tasks={"seq_mnist": base}, rules=("bptt", "eprop"), learning_rates=(0.02,),
      # Probes cost compile time: the theory probe runs for e-prop's base cell only.
      rule_overrides={"bptt": {"theory": {"every": 0}}}, task_rule_overrides={},
      checkpoint_every=0,
      # Every run fits from its first evaluation: matched fit is step 0, the end is step 10.
      fit_criteria={"seq_mnist": {"metric": "train_acc", "at_least": 0.0}}))
  return ml_collections.ConfigDict(dict(
      name="tiny", tasks={"seq_mnist": sweep},
      remedies={"lr_x2": {"remedies": {"lr_scale": 2.0}, "theory": {"every": 0}}},
      remedy_rules={}))
"""


def _report_rows(text: str, section: str) -> list[list[str]]:
  """The table rows (cells) of a ``### (x)`` section of REPORT.md."""
  part = text.split(f"### {section}")[1].split("###")[0]
  rows = [line.strip("|").split("|") for line in part.splitlines() if line.startswith("|")]
  return [[c.strip() for c in r] for r in rows[2:]]


def _num(cell: str) -> float:
  return float(cell.split("±")[0])


def test_reproduction_report_is_computed_from_the_results(tmp_path):
  import os
  import subprocess
  import sys

  from credit.reproduction import document as report_document
  from credit.training import outputs

  from scipy import stats as sp_stats

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  (tmp_path / "repro.py").write_text(REPRO_CONFIG)
  work = tmp_path / "work"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.reproduce",
      f"--config={tmp_path / 'repro.py'}",
      f"--workdir={work}",
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
    env={**os.environ, "PYTHONPATH": repo},
  )
  assert run.returncode == 0, run.stderr[-3000:]
  text = (work / "REPORT.md").read_text()
  base = outputs.read_csv(work / "seq_mnist" / "base" / "results.csv")
  lr_x2 = outputs.read_csv(work / "seq_mnist" / "lr_x2" / "results.csv")

  def final(rows, rule, metric):
    return np.asarray([r[metric] for r in rows if r["rule"] == rule and r["step"] == 10], float)

  # The theory probe ran inside the compiled training: its metrics are consistent.
  eta, c = final(base, "eprop", "theory_eta"), final(base, "eprop", "theory_c")
  lam = final(base, "eprop", "theory_lambda_max")
  np.testing.assert_allclose(eta, 0.02, rtol=1e-6)
  np.testing.assert_allclose(
    final(base, "eprop", "predicted_lambda_bound"),
    np.where(c > 0, 2 / (eta * c), np.inf),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    final(base, "eprop", "theory_stability_ratio"), eta * c * lam / 2, rtol=1e-5
  )
  assert np.all(np.isfinite(final(base, "eprop", "update_map_radius")))
  assert np.all(np.abs(final(base, "eprop", "theory_align_cos")) <= 1 + 1e-6)
  assert np.all(np.isnan([r["theory_c"] for r in base if r["step"] == 5]))  # off schedule

  close = lambda cell, x: np.testing.assert_allclose(_num(cell), x, rtol=2e-3, atol=1e-12)
  at = lambda rows, rule, metric, step: np.asarray(
    [r[metric] for r in rows if r["rule"] == rule and r["step"] == step], float
  )
  assert text.index("## Claims × tasks") < text.index("## seq_mnist")
  assert "Fit criterion: `train_acc ≥ 0` (declared in sweep.json)." in text
  # (b) the end of training (every run fits there): gaps per rule against BPTT.
  rows = {(r[0], r[1]): r for r in _report_rows(text, "(b)")}
  for gap in ("gap_acc", "gap_loss"):
    e, b = final(base, "eprop", gap), final(base, "bptt", gap)
    row = rows[("eprop", gap)]
    assert row[2] == str(len(e))
    close(row[3], e.mean())
    close(row[3].split("±")[1], e.std(ddof=1))
    close(row[4].split(" [")[0], e.mean() - b.mean())
    close(row[5], np.median(e[:, None] - b[None]))  # Hodges-Lehmann
    np.testing.assert_allclose(float(row[6]), np.mean(np.sign(e[:, None] - b[None])), atol=1e-3)
    close(row[7], sp_stats.mannwhitneyu(e, b, alternative="two-sided").pvalue)
    close(rows[("bptt", gap)][3], b.mean())
  # lambda_max: only e-prop measured it (theory_lambda_max, the metric in use).
  close(rows[("eprop", "theory_lambda_max")][3], lam.mean())
  assert "λ_max metric: `theory_lambda_max`" in text
  # (a) the window after fit: each run's first fit is step 0 (criterion 0) and its window
  # [0, 0.25 x 10 steps] holds that evaluation only.
  rows = {(r[0], r[1]): r for r in _report_rows(text, "(a)")}
  close(rows[("eprop", "gap_acc")][3], at(base, "eprop", "gap_acc", 0).mean())
  # (e) predicted bound against measured lambda_max.
  rows = {r[0]: r for r in _report_rows(text, "(e)")}
  close(rows["eprop"][1], c.mean())
  close(rows["eprop"][4], np.median(final(base, "eprop", "predicted_lambda_bound")))
  close(rows["eprop"][5], lam.mean())
  # (f) the remedy against the same rule without it, at matched fit.
  rows = {(r[0], r[1], r[2]): r for r in _report_rows(text, "(f)")}
  remedy, gap = at(lr_x2, "eprop", "gap_acc", 0), at(base, "eprop", "gap_acc", 0)
  close(rows[("lr_x2", "eprop", "gap_acc")][5], remedy.mean())
  np.testing.assert_allclose(
    float(rows[("lr_x2", "eprop", "gap_acc")][6].split(" [")[0]),
    remedy.mean() - gap.mean(),
    atol=2e-3 * max(abs(remedy.mean() - gap.mean()), 1e-6) + 1e-6,
  )
  # lr_scale = 2 really ran: its learning curve differs from the base run's.
  assert not np.allclose(final(lr_x2, "eprop", "train_loss"), final(base, "eprop", "train_loss"))
  # Figures exist and are linked; the report regenerates identically from the files.
  assert (work / "figures" / "theory_bound_seq_mnist.png").exists()
  assert "(figures/theory_bound_seq_mnist.png)" in text
  assert "(seq_mnist/base/figures/gap_acc_seq_mnist.png)" in text
  os.remove(work / "REPORT.md")
  report_document.write_report(str(work))
  assert (work / "REPORT.md").read_text() == text


@pytest.mark.parametrize("study", ["reproduction", "field"])
def test_committed_reproduction_report_regenerates_from_its_results(tmp_path, study):
  """results/<study>/REPORT.md is what experiments.report makes of the files beside it."""
  import os
  import shutil

  from credit.reproduction import document as report_document

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  committed = os.path.join(repo, "results", study)
  if not os.path.exists(os.path.join(committed, "REPORT.md")):
    pytest.skip(f"no committed {study} results")
  work = tmp_path / study
  shutil.copytree(committed, work, ignore=shutil.ignore_patterns("REPORT.md", "report.json"))
  report_document.write_report(str(work), shown_as=f"results/{study}")
  want = open(os.path.join(committed, "REPORT.md")).read()
  got = (work / "REPORT.md").read_text()
  assert got == want
