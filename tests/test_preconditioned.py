"""Preconditioned sharpness of adaptive optimizers and the optimizers' stability thresholds."""

from credit.curvature import tracking as cv
from credit.models import rnn
from credit.tasks.base import Task
from credit.training import optimizers
from credit.training.config import base_config
from credit.training.objective import make_total_loss

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.test_curvature import dense_hessian, tiny_problem


def adapted(name: str, steps: int):
  """The tiny problem after ``steps`` updates of ``name``, and its second moment by hand."""
  spec, params, batch, loss = tiny_problem()
  config = base_config()
  config.optimizer.update(name=name, learning_rate=0.05, b2=0.9)
  opt = optimizers.make_optimizer(config.optimizer)
  state = opt.init(params)
  nu = jax.tree.map(jnp.zeros_like, params)

  @jax.jit
  def step(params, state, nu):
    g = jax.grad(loss)(params, batch)
    # The EMA of squared gradients both optimizers keep (decay 0.9: b2 here, rmsprop's default).
    nu = jax.tree.map(lambda n, x: 0.9 * n + 0.1 * x**2, nu, g)
    updates, state = opt.update(g, state, params)
    return optax.apply_updates(params, updates), state, nu

  for _ in range(steps):
    params, state, nu = step(params, state, nu)
  return config, spec, params, batch, loss, state, nu


def probe_for(config, spec, batch, loss):
  task = Task("tiny", 3, 2, 5, "xent", None, {"val": batch}, "none")
  config.curvature.update(every=1, batch_size=8, top_k=1, lanczos_steps=30)  # 30 free synapses
  return cv.make_curvature_probe(config, spec, task, loss)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_preconditioned_sharpness_against_dense(x64, name):
  config, spec, params, batch, loss, state, nu = adapted(name, steps=4)
  probe = jax.jit(probe_for(config, spec, batch, loss))
  out = probe(params, None, jax.random.key(0), 0, state)
  # Dense: H over w_rec (autapses masked), P from the hand-tracked second moment.
  mask = np.asarray(cv.parameter_mask(params, spec, ("w_rec",))["w_rec"]).ravel()
  h = np.asarray(dense_hessian(loss, params, batch, ("w_rec",)))
  h = mask[:, None] * h * mask[None]
  v = np.asarray(nu["w_rec"]).ravel()
  eps = config.optimizer.eps
  p = np.sqrt(v / (1 - 0.9**4)) + eps if name == "adam" else np.sqrt(v + eps)
  d = 1 / np.sqrt(p)
  free = mask == 1
  eigs = np.linalg.eigvalsh((d[:, None] * h * d[None])[np.ix_(free, free)])
  np.testing.assert_allclose(out["lambda_max_precond"], eigs[-1], rtol=1e-8)
  # The same as the top eigenvalue of the non-symmetric P^-1 H on the free synapses.
  nonsym = np.linalg.eigvals((h / p[:, None])[np.ix_(free, free)])
  np.testing.assert_allclose(out["lambda_max_precond"], np.max(nonsym.real), rtol=1e-8)
  # Preconditioning changes the quantity: lambda_max(H) is another number.
  assert abs(out["lambda_max"] - out["lambda_max_precond"]) > 1e-3 * out["lambda_max_precond"]
  if name == "adam":  # before the first update v-hat is 0/0: NaN, and lambda_max still measured
    fresh = optimizers.make_optimizer(config.optimizer).init(params)
    out = probe(params, None, jax.random.key(0), 0, fresh)
    assert np.isnan(out["lambda_max_precond"]) and np.isfinite(out["lambda_max"])
  with pytest.raises(ValueError, match="needs the optimizer state"):
    probe(params, None, jax.random.key(0), 0)


@pytest.mark.parametrize("name", ["sgd", "momentum"])
def test_no_preconditioned_sharpness_without_preconditioner(name):
  config = base_config()
  config.optimizer.name = name
  params = {"w": jnp.ones(3)}
  assert (
    optimizers.preconditioner(
      config.optimizer, optimizers.make_optimizer(config.optimizer).init(params)
    )
    is None
  )
  assert "lambda_max_precond" not in cv.metric_names(config)
  config.optimizer.name = "adamw"
  assert "lambda_max_precond" in cv.metric_names(config)


def linear_map_radius(name: str, lam: float, eta: float, beta: float) -> float:
  """Spectral radius of a step of ``name`` on ``f = lam x^2 / 2`` (P = 1: frozen preconditioner)."""
  if name == "sgd":  # x <- x - eta lam x
    return abs(1 - eta * lam)
  if name == "momentum":  # optax heavy ball: m <- lam x + beta m; x <- x - eta m
    a = np.array([[1 - eta * lam, -eta * beta], [lam, beta]])
  else:  # Adam's EMA momentum: m <- beta m + (1 - beta) lam x; x <- x - eta m
    a = np.array([[1 - eta * (1 - beta) * lam, -eta * beta], [(1 - beta) * lam, beta]])
  return float(np.max(np.abs(np.linalg.eigvals(a))))


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "rmsprop"])
def test_stability_threshold_is_where_the_step_turns_unstable(name):
  eta, beta = 0.1, 0.8
  opt = {"name": name, "momentum": beta, "b1": beta}
  t = optimizers.stability_threshold(opt, eta)
  assert t.applies_to == ("H" if name in ("sgd", "momentum") else "P⁻¹H")
  kind = "sgd" if name == "rmsprop" else name  # rmsprop without momentum: preconditioned GD
  assert linear_map_radius(kind, 0.99 * t.value, eta, beta) < 1
  assert linear_map_radius(kind, 1.01 * t.value, eta, beta) > 1
  assert np.isnan(optimizers.stability_threshold({"name": "lion"}, eta).value)


def test_preconditioned_sharpness_in_compiled_adam_training(x64):
  from credit.curvature.hvp import make_hvp
  from credit.curvature.lanczos import lanczos_top_k
  from credit.tasks.base import Task
  from credit.training.run import seed_keys
  from credit.training.train import make_train

  # The tiny problem as a task: training batches drawn from its 8 examples.
  spec, _, batch, _ = tiny_problem()
  sample = lambda key, n: jax.tree.map(lambda x: x[jax.random.randint(key, (n,), 0, 8)], batch)
  sets = {"train": batch, "test": batch, "val": batch}
  task = Task("tiny", 3, 2, 5, "xent", sample, sets, "none")
  config = base_config()
  config.update(num_steps=20, eval_every=10, batch_size=4, num_seeds=2, reg_l2=0.01)
  config.dtype = "float64"
  config.model.n_hidden = spec.n_hidden
  config.optimizer.update(name="adam", learning_rate=0.02)
  config.curvature.update(every=10, lanczos_steps=30, batch_size=8, top_k=1)
  state, metrics = jax.jit(jax.vmap(make_train(config, task)))(seed_keys(config))
  m = np.asarray(metrics["lambda_max_precond"])
  assert np.all(np.isnan(m[:, 0])) and np.all(np.isfinite(m[:, 1:]))  # step 0: no v-hat yet
  # A direct Lanczos (another start; 30 steps, all free synapses: exact), P from the final state.
  from credit.training.objective import make_total_loss
  from credit.training.train import model_spec

  spec = model_spec(config, task)
  loss = make_total_loss(spec, task, config.reg_l2)
  b2, eps = config.optimizer.b2, config.optimizer.eps

  def direct(params, adam, key):
    mask = cv.parameter_mask(params, spec, ("w_rec",))
    hvp = make_hvp(loss, params, batch, ("w_rec",), mask=mask)
    p = jnp.sqrt(adam.nu["w_rec"] / (1 - b2**adam.count)) + eps
    d = {"w_rec": 1 / jnp.sqrt(p)}
    op = lambda v: jax.tree.map(jnp.multiply, d, hvp(jax.tree.map(jnp.multiply, d, v)))
    v0 = {"w_rec": mask["w_rec"] * jax.random.normal(key, mask["w_rec"].shape)}
    return lanczos_top_k(op, v0, 30, 1, mask=mask).eigenvalues[0]

  keys = jax.random.split(jax.random.key(11), config.num_seeds)
  expected = jax.jit(jax.vmap(direct))(state.params, state.opt_state[0], keys)
  np.testing.assert_allclose(m[:, -1], expected, rtol=1e-8)


def test_preconditioned_sharpness_leaves_out_silent_synapses(x64):
  # Under Dale's law the projection holds silent synapses at zero; where their gradient
  # vanished too, Adam's P is about eps and the L2 curvature alone makes P^-1 H huge there.
  spec, params, batch, _ = tiny_problem()
  spec = spec._replace(dale=True)
  params = rnn.project({**params, "w_rec": rnn.init_params(jax.random.key(5), spec)["w_rec"]}, spec)
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
  silent = np.zeros((6, 6), bool)
  silent[[0, 2, 4], [1, 3, 5]] = True  # off the diagonal: synapses, not autapses
  params["w_rec"] = jnp.where(silent, 0.0, params["w_rec"])
  task = Task("tiny", 3, 2, 5, "xent", None, {"val": batch}, "none")
  loss = make_total_loss(spec, task, 1e-2)
  config = base_config()
  config.reg_l2 = 1e-2
  config.optimizer.update(name="adam", learning_rate=0.05)
  opt = optimizers.make_optimizer(config.optimizer)
  state = opt.init(params)
  for _ in range(3):
    updates, state = opt.update(jax.grad(loss)(params, batch), state, params)
  inner = state[0]
  nu = {**inner.nu, "w_rec": jnp.where(silent, 0.0, inner.nu["w_rec"])}
  state = (inner._replace(nu=nu),) + tuple(state[1:])
  config.curvature.update(every=1, batch_size=8, top_k=1, lanczos_steps=27)  # 27 free synapses
  out = jax.jit(cv.make_curvature_probe(config, spec, task, loss))(
    params, None, jax.random.key(0), 0, state
  )
  # Dense, on the synapses the update moves: off-diagonal and not silent.
  h = np.asarray(dense_hessian(loss, params, batch, ("w_rec",)))
  p = np.sqrt(np.asarray(nu["w_rec"]).ravel() / (1 - 0.999**3)) + config.optimizer.eps
  d = 1 / np.sqrt(p)
  scaled = d[:, None] * h * d[None]
  synapse = ~np.eye(6, dtype=bool).ravel()
  free = synapse & ~silent.ravel()
  want = np.linalg.eigvalsh(scaled[np.ix_(free, free)])[-1]
  np.testing.assert_allclose(out["lambda_max_precond"], want, rtol=1e-8)
  # With the silent synapses in, the value would be the L2 term over eps: far larger.
  with_silent = np.linalg.eigvalsh(scaled[np.ix_(synapse, synapse)])[-1]
  assert with_silent > 1e3 * want
