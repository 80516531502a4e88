"""MDGL's modulatory sum, ModProp, KeRNL and DNI; the learned rule state in training.

Numerics in float64 on tiny networks (N = 7, N_in = 3, N_out = 2, T = 6, B = 3),
against direct dense computations written with explicit loops in numpy. The
Dale networks have a third of their recurrent weights at zero, as after Dale's
projection, so that the choices of ``modulatory_synapses`` differ.
"""

import functools

from credit import rules
from credit.models import rnn
from credit.rules import alignment, dni, kernl, mdgl, modprop
from credit.training import alignment_probe

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.conftest import random_network, relative_error, smoke_config, xent_task

N, N_IN, N_OUT, T, B = 7, 3, 2, 6, 3
KINDS = {  # (activation, alpha, no_autapse)
  "tanh_leaky": ("tanh", 0.6, True),
  "relu": ("relu", 1.0, True),
  "relu_autapse": ("relu", 0.7, False),
}
SYNAPSES = ("existing", "all", "dense")


@functools.cache
def make_net(kind="tanh_leaky", dale=True, steps=T):
  """A random network (a third of ``W_rec`` zero under Dale), trajectory and errors (float64)."""
  activation, alpha, no_autapse = KINDS[kind]
  spec = rnn.RNNSpec(
    N_IN, N, N_OUT, alpha=alpha, activation=activation, no_autapse=no_autapse, dale=dale
  )
  rng = np.random.default_rng(0)
  w_rec = rng.normal(0, np.sqrt(2 / N), (N, N))
  if dale:
    w_rec = np.abs(w_rec) * np.asarray(rnn.presynaptic_sign(spec, jnp.float64))
    w_rec = w_rec * (rng.uniform(size=(N, N)) > 1 / 3)
  if not no_autapse:
    w_rec[np.diag_indices(N)] = 0.5 * np.arange(1, N + 1) / N
  return random_network(spec, w_rec, rng, B, steps)


@functools.cache
def _compiled(name, spec, options):
  rule = rules.make(name, spec, ml_collections.ConfigDict(dict(options)))
  return rule, jax.jit(rule.grads)


def rule_grads(name, spec, params, traj, errors, state=None, **options):
  full = {**rules.default_options().to_dict(), **options}  # defaults share compilations
  rule, grads = _compiled(name, spec, tuple(sorted(full.items())))
  if state is None:
    state = rule.init(jax.random.key(1), params)
  return grads(params, state, traj, errors, jax.random.key(2))


def exact_grads(spec, params, traj, errors):
  """``jax.grad`` through the forward pass of :math:`\\sum_t e_t \\cdot y_t` (dL/dy = e)."""

  def surrogate_loss(p):
    return jnp.sum(rnn.forward(p, spec, traj.x, traj.h0).y * errors)

  return jax.jit(jax.grad(surrogate_loss))(params)


def _arrays(spec, params, traj, errors):
  """``a_hat [B, T, m]``, ``D [B, T, N]``, ``q [B, T, N]``, ``W [N, N]`` in numpy."""
  ones = np.ones(traj.x.shape[:2] + (1,))
  a_hat = np.concatenate([np.asarray(traj.h_prev), np.asarray(traj.x), ones], -1)
  d = spec.alpha * np.asarray(traj.dphi)
  q = np.einsum("on,bto->btn", np.asarray(params["w_out"]), np.asarray(errors))
  return a_hat, d, q, np.asarray(rnn.effective_w_rec(params, spec))


def _packed(g, spec):
  mask = np.asarray(rnn.recurrent_mask(spec, jnp.float64))
  return {"w_rec": g[:, :N] * mask, "w_in": g[:, N : N + N_IN], "b": g[:, -1]}


def dense_type_weights(w, spec, synapses):
  """``W~`` from its definition, one entry at a time (rules.md §1.8, §1.9)."""
  types = rnn.cell_types(spec)
  allowed = np.asarray(rnn.recurrent_mask(spec, jnp.float64)) > 0
  out = np.zeros((N, N))
  for k in range(N):
    for p in range(N):
      if k == p or (synapses == "existing" and w[k, p] == 0):
        continue
      block = [
        w[i, j]
        for i in range(N)
        for j in range(N)
        if allowed[i, j] and types[i] == types[k] and types[j] == types[p]
      ]
      if synapses != "dense":
        block = [v for v in block if v != 0]
      out[k, p] = np.mean(block) if block else 0.0
  return out


def dense_one_hop(spec, params, traj, errors, w_mod):
  """MDGL's past-facing one-hop influence tensor ``M[k, p, :]``, contracted with ``q_t``."""
  a_hat, d, q, w = _arrays(spec, params, traj, errors)
  g = np.zeros((N, a_hat.shape[-1]))
  for b in range(B):
    e_prev = np.zeros_like(g)
    for t in range(errors.shape[1]):
      lam = (1 - spec.alpha) + d[b, t] * np.diag(w)
      e = lam[:, None] * e_prev + np.outer(d[b, t], a_hat[b, t])
      for k in range(N):
        for p in range(N):
          infl = e[p] if k == p else d[b, t, k] * w_mod[k, p] * e_prev[p]
          g[p] += q[b, t, k] * infl
      e_prev = e
  return _packed(g, spec)


def dense_surrogate_backward(spec, params, traj, errors, w_mod, mu):
  """ModProp's gradient with the surrogate Jacobians built as full ``N x N`` matrices."""
  a_hat, d, q, w = _arrays(spec, params, traj, errors)
  g = np.zeros((N, a_hat.shape[-1]))
  steps = errors.shape[1]
  for b in range(B):
    c = np.zeros(N)
    for t in reversed(range(steps)):
      if t + 1 < steps:
        jac = np.zeros((N, N))
        for k in range(N):
          for p in range(N):
            if k == p:
              jac[k, p] = (1 - spec.alpha) + d[b, t + 1, k] * w[k, k]
            else:
              jac[k, p] = spec.alpha * mu * w_mod[k, p]
        c = q[b, t] + jac.T @ c
      else:
        c = q[b, t].copy()
      g += np.outer(d[b, t] * c, a_hat[b, t])
  return _packed(g, spec)


def _recurrent(g):
  return {k: g[k] for k in ("w_rec", "w_in", "b")}


# --------------------------------------------------------------------------- MDGL


@pytest.mark.parametrize(
  "synapses,kind",
  [
    ("existing", "tanh_leaky"),
    ("all", "tanh_leaky"),
    ("dense", "tanh_leaky"),
    ("existing", "relu_autapse"),
  ],
)
def test_mdgl_modulatory_sum_matches_dense_computation(x64, synapses, kind):
  spec, params, traj, errors = make_net(kind)
  w_mod = dense_type_weights(np.asarray(params["w_rec"]), spec, synapses)
  np.testing.assert_allclose(mdgl.type_averaged_weights(params, spec, synapses), w_mod, atol=1e-14)
  want = dense_one_hop(spec, params, traj, errors, w_mod)
  for online in (False, True):
    got = rule_grads(
      "mdgl", spec, params, traj, errors, online=online, modulatory_synapses=synapses
    )
    assert relative_error(_recurrent(got), want) < 1e-10


def test_mdgl_default_sums_over_existing_synapses(x64):
  spec, params, traj, errors = make_net("tanh_leaky")
  assert rules.default_options().modulatory_synapses == "existing"
  zeros = float(np.mean(np.asarray(params["w_rec"])[~np.eye(N, dtype=bool)] == 0))
  assert 0.2 < zeros < 0.5
  existing = rule_grads("mdgl", spec, params, traj, errors)
  every = rule_grads("mdgl", spec, params, traj, errors, modulatory_synapses="all")
  explicit = rule_grads("mdgl", spec, params, traj, errors, modulatory_synapses="existing")
  assert relative_error(existing, explicit) == 0.0
  # The silent synapses carry a sizable part of the modulatory term.
  assert relative_error(_recurrent(existing), _recurrent(every)) > 0.02
  no_dale = make_net("tanh_leaky", dale=False)
  a, b = (rule_grads("mdgl", *no_dale, modulatory_synapses=s) for s in ("existing", "all"))
  assert relative_error(a, b) < 1e-12  # no zero weights: the forms coincide


# --------------------------------------------------------------------------- ModProp


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dale", [False, True])
def test_modprop_with_exact_weights_and_derivative_is_bptt(x64, kind, dale):
  spec, params, traj, errors = make_net(kind, dale=dale)
  got = jax.jit(modprop.modprop_grads, static_argnums=1)(
    params, spec, traj, errors, mdgl.exact_one_hop_weights(params, spec), traj.dphi
  )
  assert relative_error(got, exact_grads(spec, params, traj, errors)) < 1e-10


@pytest.mark.parametrize("synapses", SYNAPSES)
def test_modprop_matches_dense_surrogate_backward_pass(x64, synapses):
  spec, params, traj, errors = make_net("tanh_leaky")
  w_mod = dense_type_weights(np.asarray(params["w_rec"]), spec, synapses)
  want = dense_surrogate_backward(spec, params, traj, errors, w_mod, 0.25)
  got = rule_grads("modprop", spec, params, traj, errors, modulatory_synapses=synapses)
  assert relative_error(_recurrent(got), want) < 1e-10
  # Its approximations do change the gradient.
  assert relative_error(got, exact_grads(spec, params, traj, errors)) > 1e-3


@pytest.mark.parametrize("kind", ["relu", "relu_autapse"])
def test_modprop_surrogate_pass_with_other_mu_and_kinds(x64, kind):
  spec, params, traj, errors = make_net(kind)
  w_mod = dense_type_weights(np.asarray(params["w_rec"]), spec, "existing")
  grads = jax.jit(modprop.modprop_grads, static_argnums=1)
  for mu in (0.25, 0.6):
    want = dense_surrogate_backward(spec, params, traj, errors, w_mod, mu)
    got = grads(params, spec, traj, errors, jnp.asarray(w_mod), mu)
    assert relative_error(_recurrent(got), want) < 1e-10


# --------------------------------------------------------------------------- KeRNL


def dense_kernl(spec, params, traj, errors, a, gamma):
  """KeRNL's gradient with the traces ``B_t`` carried forward, in numpy."""
  a_hat, d, q, _ = _arrays(spec, params, traj, errors)
  k = np.clip(1 - gamma, 0, 1)
  g = np.zeros((N, a_hat.shape[-1]))
  for b in range(B):
    trace = np.zeros_like(g)
    for t in range(errors.shape[1]):
      trace = k[:, None] * trace + np.outer(d[b, t], a_hat[b, t])
      g += (a.T @ q[b, t])[:, None] * trace
  return _packed(g, spec)


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu_autapse"])
def test_kernl_starts_as_leak_only_eprop(x64, kind):
  spec, params, traj, errors = make_net(kind, dale=False)
  want = rule_grads("eprop", spec, params, traj, errors, self_coupling=False)
  for online in (False, True):
    assert (
      relative_error(rule_grads("kernl", spec, params, traj, errors, online=online), want) < 1e-12
    )


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu"])
def test_kernl_matches_dense_traces(x64, kind):
  spec, params, traj, errors = make_net(kind, dale=False)
  rng = np.random.default_rng(5)
  a = np.eye(N) + rng.normal(0, 0.3, (N, N))
  gamma = rng.uniform(0.1, 0.9, N)
  want = dense_kernl(spec, params, traj, errors, a, gamma)
  rule = rules.make("kernl", spec)
  state = {**rule.init(jax.random.key(0), params), "a": jnp.asarray(a), "gamma": jnp.asarray(gamma)}
  for online in (False, True):
    got = rule_grads("kernl", spec, params, traj, errors, state=state, online=online)
    assert relative_error(_recurrent(got), want) < 1e-10


def test_kernl_linear_response_is_the_perturbed_copy(x64):
  spec, params, traj, _ = make_net("tanh_leaky", dale=False)
  noise = jax.random.normal(jax.random.key(3), traj.h.shape, jnp.float64)
  phi, _ = rnn.activation_fns(spec.activation)
  w, w_in = rnn.effective_w_rec(params, spec), params["w_in"]

  def perturbed(sigma):  # the network with sigma * zeta_t added to its state at each step
    def body(h, inputs):
      x_t, z_t = inputs
      u = h @ w.T + x_t @ w_in.T + params["b"]
      h = (1 - spec.alpha) * h + spec.alpha * phi(u) + sigma * z_t
      return h, h

    xs = (jnp.swapaxes(traj.x, 0, 1), jnp.swapaxes(noise, 0, 1))
    return jnp.swapaxes(jax.lax.scan(body, traj.h0, xs)[1], 0, 1)

  sigma = 1e-5
  finite = (perturbed(sigma) - perturbed(-sigma)) / (2 * sigma)
  got = kernl.linear_response(params, spec, traj, noise)
  assert relative_error(got, finite) < 1e-8


def test_kernl_fit_gradients_equal_autodiff(x64):
  rng = np.random.default_rng(6)
  a = jnp.asarray(np.eye(N) + rng.normal(0, 0.3, (N, N)))
  gamma = jnp.asarray(rng.uniform(0.1, 0.9, N))
  noise = jnp.asarray(rng.normal(size=(B, T, N)))
  response = jnp.asarray(rng.normal(size=(B, T, N)))

  def fit_loss(a, gamma):
    omega, total = jnp.zeros((B, N)), 0.0
    for t in range(T):
      omega = (1 - gamma) * omega + noise[:, t]
      total = total + 0.5 * jnp.sum((omega @ a.T - response[:, t]) ** 2)
    return total / (B * T)

  got, mse = jax.jit(kernl.kernel_fit_grads)(a, gamma, noise, response)
  want_a, want_gamma = jax.jit(jax.grad(fit_loss, argnums=(0, 1)))(a, gamma)
  assert relative_error(got["a"], want_a) < 1e-12
  assert relative_error(got["gamma"], want_gamma) < 1e-12
  np.testing.assert_allclose(mse, 2 * fit_loss(a, gamma), rtol=1e-12)


# --------------------------------------------------------------------------- DNI


def test_dni_starts_at_the_immediate_credit(x64):
  spec, params, traj, errors = make_net("tanh_leaky", dale=False)
  want = rule_grads("tbptt", spec, params, traj, errors, truncation=1)
  assert relative_error(rule_grads("dni", spec, params, traj, errors), want) < 1e-12


def test_dni_fit_gradient_matches_dense_bootstrap(x64):
  spec, params, traj, errors = make_net("relu_autapse", dale=False)
  rng = np.random.default_rng(7)
  a = rng.normal(0, 0.3, (N, N + N_OUT + 1))
  _, d, q, w = _arrays(spec, params, traj, errors)
  h, e = np.asarray(traj.h), np.asarray(errors)
  grad = np.zeros_like(a)
  for b in range(B):
    inputs = [np.concatenate([h[b, t], B * e[b, t], [1.0]]) for t in range(T)]
    for t in range(T):
      target = B * q[b, t]
      if t + 1 < T:
        jac = (1 - spec.alpha) * np.eye(N) + d[b, t + 1][:, None] * w
        target = target + jac.T @ (a @ inputs[t + 1])
      grad += np.outer(a @ inputs[t] - target, inputs[t])
  got, _ = jax.jit(dni.module_fit_grad, static_argnums=1)(
    params, spec, traj, errors, jnp.asarray(a)
  )
  assert relative_error(got, grad / (B * T)) < 1e-12
  # The rule's gradient with this module: (D_t * c^_t) a_t^T with c^_t = A a~_t / B.
  want = np.zeros((N, N + N_IN + 1))
  a_hat, _, _, _ = _arrays(spec, params, traj, errors)
  for b in range(B):
    for t in range(T):
      c_hat = a @ np.concatenate([h[b, t], B * e[b, t], [1.0]]) / B
      want += np.outer(d[b, t] * c_hat, a_hat[b, t])
  state = {**rules.make("dni", spec).init(jax.random.key(0), params), "a": jnp.asarray(a)}
  got = rule_grads("dni", spec, params, traj, errors, state=state)
  assert relative_error(_recurrent(got), _packed(want, spec)) < 1e-12


# --------------------------------------------------------------------------- learning


def _alignment_before_and_after(name, steps=60, **options):
  """Cosine with BPTT on a held-out batch, before and after ``steps`` state updates.

  A leaky tanh network (alpha = 0.5) with fixed weights, random inputs and a
  loss on the last step only (MSE to 1), so that most of the credit is in the
  future-facing part the learned quantities stand for.
  """
  spec = rnn.RNNSpec(N_IN, 8, N_OUT, alpha=0.5, activation="tanh")
  rng = np.random.default_rng(0)
  params = {
    "w_in": rng.normal(0, 1, (8, N_IN)),
    "w_rec": rng.normal(0, 1.5 / np.sqrt(8), (8, 8)),
    "b": rng.normal(0, 0.1, 8),
    "w_out": rng.normal(0, 1 / np.sqrt(8), (N_OUT, 8)),
    "b_out": np.zeros(N_OUT),
  }
  params = rnn.project({k: jnp.asarray(v, jnp.float64) for k, v in params.items()}, spec)
  rule = rules.make(name, spec, ml_collections.ConfigDict(options))
  reference = rules.make("bptt", spec)
  batch, steps_per_seq = 16, 10

  def sample(key):
    x = jax.random.normal(key, (batch, steps_per_seq, N_IN), jnp.float64)
    traj = rnn.forward(params, spec, x)
    return traj, (traj.y - 1.0).at[:, :-1].set(0.0) / batch

  def cos(state, held_out):
    g = rule.grads(params, state, *held_out, None)
    r = reference.grads(params, {}, *held_out, None)
    return alignment.cosine_alignment(g, r)["recurrent"]

  def run(key):
    k_state, k_test, k_train = jax.random.split(key, 3)
    held_out = sample(k_test)
    start = rule.init(k_state, params)

    def body(state, k):
      k_batch, k_rule = jax.random.split(k)
      return rule.update_state(params, state, *sample(k_batch), k_rule), None

    end, _ = jax.lax.scan(body, start, jax.random.split(k_train, steps))
    return cos(start, held_out), cos(end, held_out)

  return tuple(float(c) for c in jax.jit(run)(jax.random.key(0)))


@pytest.mark.parametrize("name,options", [("kernl", dict(kernl_learning_rate=1e-2)), ("dni", {})])
def test_learned_state_raises_alignment(x64, name, options):
  before, after = _alignment_before_and_after(name, **options)
  assert after > before + 0.1, (before, after)
  assert after > 0.85, (before, after)


# --------------------------------------------------------------------------- training


def test_learned_state_in_compiled_training_probes_and_checkpoints(tmp_path):
  from credit.sweeps.checkpointing import CellCheckpointer
  from credit.training.train import make_trainer

  config = smoke_config(
    rule="kernl", num_seeds=2, num_steps=4, eval_every=4, **{"model.n_hidden": 8}
  )
  config.task_options.train_eval_size = 64
  config.alignment.every = 4
  config.alignment.batch_size = 16
  config.rule_options.kernl_learning_rate = 1e-2
  trainer = make_trainer(config, probes=())
  keys = jax.random.split(jax.random.key(0), 2)
  start = jax.vmap(trainer.init)(keys)
  end = jax.jit(jax.vmap(lambda s: trainer.run_chunk(s, 4)))(start)
  assert not np.any(np.asarray(end.diverged))
  moved = np.abs(np.asarray(end.rule_state["a"]) - np.asarray(start.rule_state["a"]))
  assert np.all(moved.max(axis=(1, 2)) > 1e-4)  # A learned, in every seed
  assert np.all(np.asarray(end.rule_state["opt"][0].count) == 4)
  # The alignment probe reads the state it is given: the learned one differs from the initial.
  probe = jax.jit(
    jax.vmap(
      alignment_probe.make_alignment_probe(config, trainer.spec, trainer.task, trainer.rule),
      in_axes=(0, 0, None, None),
    )
  )
  step = jnp.asarray(0, jnp.int32)
  now = probe(end.params, end.rule_state, jax.random.key(1), step)["align_cos_recurrent"]
  stale = probe(end.params, start.rule_state, jax.random.key(1), step)["align_cos_recurrent"]
  assert np.all(np.abs(np.asarray(now) - np.asarray(stale)) > 1e-6)
  # A checkpoint holds the learned state (keys as raw key data, as the sweep runner stores them).
  host = jax.tree.map(np.asarray, end._replace(key=jax.random.key_data(end.key)))
  ckpt = CellCheckpointer(str(tmp_path / "cell"))
  ckpt.save(4, 1, host, {"loss": np.zeros((2, 1))})
  ckpt.wait()
  template = jax.tree.map(np.zeros_like, host)
  restored = ckpt.restore_latest(template, {"loss": np.zeros((2, 1))})
  ckpt.close()
  for got, want in zip(jax.tree.leaves(restored.state), jax.tree.leaves(host), strict=True):
    np.testing.assert_array_equal(got, want)


def test_learned_state_through_the_noise_remedies(x64):
  from credit.tasks.base import Batch
  from credit.training import remedies
  from credit.training.objective import loss_and_grads, loss_grads_and_state

  spec, params, traj, _ = make_net("tanh_leaky", dale=False)
  task = xent_task(spec)
  labels = np.random.default_rng(8).integers(0, N_OUT, B)
  targets = jnp.broadcast_to(jnp.asarray(np.eye(N_OUT)[labels])[:, None], (B, T, N_OUT))
  batch = Batch(traj.x, targets, jnp.ones((B, T), jnp.float64))
  rule = rules.make("dni", spec)
  state = rule.init(jax.random.key(0), params)
  noise = remedies.Noise(weight_std=0.0, activity_std=0.1)
  args = (rule, spec, task, 0.0, params, state, batch, jax.random.key(1), jax.random.key(2), noise)
  loss, grads, new_state = remedies.noisy_loss_and_grads(*args, objective=loss_grads_and_state)
  assert np.abs(np.asarray(new_state["a"]) - np.asarray(state["a"])).max() > 1e-5
  same_loss, same_grads = remedies.noisy_loss_and_grads(*args)  # default: loss_and_grads
  assert float(loss) == float(same_loss) and relative_error(grads, same_grads) == 0.0
  # Without noise, the state update leaves the rule's gradient as loss_and_grads gives it.
  _, plain = loss_and_grads(rule, spec, task, 0.0, params, state, batch, jax.random.key(1))
  _, with_state, _ = loss_grads_and_state(
    rule, spec, task, 0.0, params, state, batch, jax.random.key(1)
  )
  assert relative_error(with_state, plain) == 0.0


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
  "field,value",
  [
    ("modulatory_synapses", "some"),
    ("modprop_mu", "x"),
    ("kernl_learning_rate", 0.0),
    ("dni_learning_rate", -1.0),
  ],
)
def test_validate_names_the_new_fields(field, value):
  options = rules.default_options()
  del options[field]
  options[field] = value
  with pytest.raises(ValueError, match=f"rule_options.{field}"):
    rules.validate("mdgl", options)
