"""Learning-rule library: exactness limits, reductions, online == offline, alignment, training.

Numerics run in float64 on tiny networks (N = 7, N_in = 3, N_out = 2, T = 6,
B = 3) with random inputs, initial states and output errors at every step.
Compilations are shared between tests (cached networks and jitted rules) to
keep the file fast on two cores.
"""

import functools

from credit import losses, rules, tasks
from credit.models import rnn
from credit.rules import alignment, eligibility_trace, eprop, mdgl, rtrl
from credit.training import alignment_probe

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.conftest import assert_trees_close, random_network, relative_error

N, N_IN, N_OUT, T, B = 7, 3, 2, 6, 3
# Network kinds: (activation, alpha, no_autapse).
KINDS = {
  "tanh_leaky": ("tanh", 0.6, True),
  "relu": ("relu", 1.0, True),  # the reference setup: ReLU, no leak, no autapses
  "relu_leaky": ("relu", 0.7, True),
  "relu_autapse": ("relu", 0.7, False),
}


@functools.cache
def make_net(kind="tanh_leaky", dale=False, steps=T, w_rec_zero=False):
  """A random network, trajectory and per-step output errors (float64; call under ``x64``).

  Random numbers come from numpy: compiling JAX's PRNG costs seconds on CPU.
  """
  activation, alpha, no_autapse = KINDS[kind]
  spec = rnn.RNNSpec(
    N_IN, N, N_OUT, alpha=alpha, activation=activation, no_autapse=no_autapse, dale=dale
  )
  rng = np.random.default_rng(0)
  w_rec = rng.normal(0, np.sqrt(2 / N), (N, N))
  if dale:  # E columns positive, I columns negative
    w_rec = np.abs(w_rec) * np.asarray(rnn.presynaptic_sign(spec, jnp.float64))
  if not no_autapse:  # a nonzero diagonal, so that the self-coupling matters
    w_rec[np.diag_indices(N)] = 0.5 * np.arange(1, N + 1) / N
  return random_network(spec, 0 * w_rec if w_rec_zero else w_rec, rng, B, steps)


@functools.cache
def _compiled(name, spec, options):
  """The rule and its jitted ``grads``, cached so that tests share compilations."""
  rule = rules.make(name, spec, ml_collections.ConfigDict(dict(options)))
  return rule, jax.jit(rule.grads)


def rule_grads(name, spec, params, traj, errors, symmetric=False, **options):
  """Rule ``name``'s gradient (``symmetric``: random feedback B := W_out^T)."""
  # Key the cache on the options this rule reads, so that tests share compilations.
  reads = {
    "tbptt": ("truncation",),
    "rflo": ("online",),
    "eprop_random": ("online", "self_coupling"),
  }
  reads.update({k: ("online", "self_coupling") for k in ("eprop", "mdgl", "mdgl_exact")})
  full = {**rules.default_options().to_dict(), **options}
  rule, grads = _compiled(name, spec, tuple((k, full[k]) for k in reads.get(name, ())))
  state = rule.init(jax.random.key(1), params)
  if symmetric and name in rules.RANDOM_FEEDBACK_RULES:
    state = {"feedback": params["w_out"].T}
  return grads(params, state, traj, errors, jax.random.key(2))


def reference(spec, params, traj, errors):
  return rule_grads("bptt", spec, params, traj, errors)


# --------------------------------------------------------------------------- exact rules


def test_bptt_trace_form_equals_jax_grad(x64):
  spec, params, traj, _ = make_net("tanh_leaky")
  rng = np.random.default_rng(3)
  targets = jnp.asarray(np.eye(N_OUT)[rng.integers(0, N_OUT, (B, T))])
  mask = jnp.asarray(rng.uniform(size=(B, T)) < 0.6, jnp.float64).at[:, -1].set(1.0)

  def data_loss(p):
    return losses.cross_entropy(rnn.forward(p, spec, traj.x, traj.h0).y, targets, mask)

  errors = jax.grad(lambda y: losses.cross_entropy(y, targets, mask))(traj.y)
  assert_trees_close(reference(spec, params, traj, errors), jax.jit(jax.grad(data_loss))(params))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("loss_steps", [None, (T - 1,), (1, 3), (0, 2, T - 1)])
def test_bptt_fused_program_equals_jax_grad(x64, kind, loss_steps):
  """Training's time-major BPTT (readout at the loss steps only) against reverse mode."""
  spec, params, traj, _ = make_net(kind, dale=kind == "relu")
  rng = np.random.default_rng(4)
  targets = jnp.asarray(np.eye(N_OUT)[rng.integers(0, N_OUT, (B, T))])
  mask = np.zeros((B, T)) if loss_steps else rng.uniform(size=(B, T))
  mask[:, list(loss_steps or [])] = rng.uniform(0.2, 1.0, (B, len(loss_steps or [])))
  mask = jnp.asarray(mask)
  steps = np.arange(T) if loss_steps is None else np.asarray(loss_steps)

  def data_loss(p):  # h_0 = 0, as in training
    y = rnn.forward(p, spec, traj.x).y
    return losses.cross_entropy(y, targets, mask)

  rule = rules.make("bptt", spec, loss_steps=loss_steps)
  fused = jax.jit(
    lambda p: rule.fused(
      p, traj.x, lambda y: losses.cross_entropy(y, targets[:, steps], mask[:, steps])
    )
  )
  loss, grads = fused(params)
  np.testing.assert_allclose(loss, data_loss(params), rtol=1e-12)
  assert_trees_close(grads, jax.jit(jax.grad(data_loss))(params))


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu", "relu_autapse"])
def test_rtrl_equals_bptt(x64, kind):
  spec, params, traj, errors = make_net(kind)
  assert (
    relative_error(
      rule_grads("rtrl", spec, params, traj, errors), reference(spec, params, traj, errors)
    )
    < 1e-10
  )


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu"])
@pytest.mark.parametrize("window", [T, T + 3])
def test_tbptt_long_window_equals_bptt(x64, kind, window):
  spec, params, traj, errors = make_net(kind)
  got = rule_grads("tbptt", spec, params, traj, errors, truncation=window)
  assert relative_error(got, reference(spec, params, traj, errors)) < 1e-10


def _tbptt_oracle(spec, params, traj, errors, window):
  """Each step's loss by autodiff through its last ``window`` steps from a constant state."""
  phi, _ = rnn.activation_fns(spec.activation)
  h_prev = traj.h_prev

  def linearized_loss(p):
    total = 0.0
    w = rnn.effective_w_rec(p, spec)
    for t in range(errors.shape[1]):
      start = max(0, t - window + 1)
      h = jax.lax.stop_gradient(h_prev[:, start])
      for s in range(start, t + 1):
        u = h @ w.T + traj.x[:, s] @ p["w_in"].T + p["b"]
        h = (1 - spec.alpha) * h + spec.alpha * phi(u)
      total = total + jnp.sum(errors[:, t] * (h @ p["w_out"].T + p["b_out"]))
    return total

  return jax.jit(jax.grad(linearized_loss))(params)


@pytest.mark.parametrize("kind,window", [("tanh_leaky", 3), ("relu", 1), ("relu_autapse", 2)])
def test_tbptt_window_matches_autodiff_oracle(x64, kind, window):
  spec, params, traj, errors = make_net(kind)
  got = rule_grads("tbptt", spec, params, traj, errors, truncation=window)
  assert relative_error(got, _tbptt_oracle(spec, params, traj, errors, window)) < 1e-10


# --------------------------------------------------------------------------- e-prop family


@pytest.mark.parametrize("name", rules.ONLINE_RULES)
@pytest.mark.parametrize("kind", ["tanh_leaky", "relu", "relu_autapse"])
def test_online_equals_offline(x64, name, kind):
  spec, params, traj, errors = make_net(kind, dale=name == "mdgl")
  fast = rule_grads(name, spec, params, traj, errors, online=False)
  online = rule_grads(name, spec, params, traj, errors, online=True)
  assert relative_error(online, fast) < 1e-10


@pytest.mark.parametrize("name", ["eprop", "mdgl"])
@pytest.mark.parametrize("kind", ["tanh_leaky", "relu"])
@pytest.mark.parametrize("steps", [(T - 1,), (1, 2), (0, 3)])
def test_offline_skips_steps_without_credit_exactly(x64, name, kind, steps):
  # Losses on a few steps only (seq-MNIST: the last one): the offline rule
  # contracts only the credited steps; it must still equal the online traces.
  spec, params, traj, errors = make_net(kind, dale=name == "mdgl")
  errors = errors * jnp.zeros(T).at[jnp.array(steps)].set(1.0)[None, :, None]
  fast = rule_grads(name, spec, params, traj, errors, online=False)
  online = rule_grads(name, spec, params, traj, errors, online=True)
  assert relative_error(fast, online) < 1e-10
  assert np.any(np.asarray(fast["w_rec"]) != 0)


def test_credited_steps():
  errors = jnp.zeros((2, 6, 1)).at[1, 3].set(1.0)
  want = [False, False, False, True, False, False]
  np.testing.assert_array_equal(eligibility_trace.credited_steps(errors, None), want)
  np.testing.assert_array_equal(
    eligibility_trace.credited_steps(errors, None, modulated=True),
    [False, False, True, True, False, False],
  )
  np.testing.assert_array_equal(
    eligibility_trace.credited_steps(errors, jnp.ones(6)), [True, True, True, True, False, False]
  )


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu", "relu_leaky"])
def test_eprop_equals_three_factor_autodiff(x64, kind):
  spec, params, traj, errors = make_net(kind)
  assert (
    relative_error(
      rule_grads("eprop", spec, params, traj, errors),
      rule_grads("three_factor_autodiff", spec, params, traj, errors),
    )
    < 1e-10
  )


def test_three_factor_autodiff_is_leak_only_eprop_with_autapses(x64):
  spec, params, traj, errors = make_net("relu_autapse")
  oracle = rule_grads("three_factor_autodiff", spec, params, traj, errors)
  assert (
    relative_error(rule_grads("eprop", spec, params, traj, errors, self_coupling=False), oracle)
    < 1e-10
  )
  assert (
    relative_error(rule_grads("rflo", spec, params, traj, errors, symmetric=True), oracle) < 1e-10
  )
  # With autapses, e-prop's self-coupling makes a difference.
  assert relative_error(rule_grads("eprop", spec, params, traj, errors), oracle) > 1e-6


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu_leaky"])
def test_eprop_equals_bptt_without_recurrence(x64, kind):
  spec, params, traj, errors = make_net(kind, w_rec_zero=True)
  for online in (False, True):
    got = rule_grads("eprop", spec, params, traj, errors, online=online)
    assert relative_error(got, reference(spec, params, traj, errors)) < 1e-10


# Rank-one estimates of the immediate influence stay random for one step (their
# unbiasedness is tested in test_rules_rtrl_approx.py); KF-RTRL's is exact.
@pytest.mark.parametrize("name", [n for n in rules.names() if n not in ("uoro", "r_kf_rtrl")])
def test_every_rule_equals_bptt_for_one_step(x64, name):
  spec, params, traj, errors = make_net("tanh_leaky", steps=1)
  want = reference(spec, params, traj, errors)
  for online in (False, True) if name in rules.ONLINE_RULES else (False,):
    got = rule_grads(name, spec, params, traj, errors, symmetric=True, online=online, truncation=1)
    assert relative_error(got, want) < 1e-10


@pytest.mark.parametrize("name", rules.names())
def test_masked_synapses_get_zero_gradient(x64, name):
  spec, params, traj, errors = make_net("relu", dale=name == "mdgl")
  for online in (False, True) if name in rules.ONLINE_RULES else (False,):
    g = rule_grads(name, spec, params, traj, errors, online=online, truncation=2)
    assert np.all(np.diag(np.asarray(g["w_rec"])) == 0.0)
    assert np.any(np.asarray(g["w_rec"]) != 0.0)
    assert jax.tree.structure(g) == jax.tree.structure(params)


@pytest.mark.parametrize("kind", ["tanh_leaky", "relu_leaky"])
def test_rflo_with_symmetric_feedback_equals_eprop(x64, kind):
  spec, params, traj, errors = make_net(kind)
  want = rule_grads("eprop", spec, params, traj, errors)
  for name in ("rflo", "eprop_random"):
    got = rule_grads(name, spec, params, traj, errors, symmetric=True)
    assert relative_error(got, want) < 1e-10


@pytest.mark.parametrize("name", ["mdgl", "rflo"])
def test_online_rules_vmap_over_seeds(x64, name):
  spec, params, traj, errors = make_net("relu_leaky", dale=name == "mdgl")
  rule = rules.make(name, spec, ml_collections.ConfigDict(dict(online=True)))
  stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
  keys = jax.random.split(jax.random.key(0), 2)

  def one(p, k):
    return rule.grads(p, rule.init(k, p), traj, errors, k)

  batched = jax.jit(jax.vmap(one))(stacked, keys)
  for i in range(2):
    single = jax.jit(one)(jax.tree.map(lambda a, i=i: a[i], stacked), keys[i])
    assert relative_error(jax.tree.map(lambda a, i=i: a[i], batched), single) < 1e-12


def test_random_feedback_state(x64):
  spec, params, _, _ = make_net()
  rule = rules.make("rflo", spec, ml_collections.ConfigDict(dict(feedback_scale=2.0)))
  s1, s2 = rule.init(jax.random.key(0), params), rule.init(jax.random.key(0), params)
  assert s1["feedback"].shape == (N, N_OUT) and s1["feedback"].dtype == jnp.float64
  np.testing.assert_array_equal(s1["feedback"], s2["feedback"])
  big = eprop.random_feedback(jax.random.key(1), rnn.RNNSpec(3, 400, 50), 2.0, jnp.float64)
  np.testing.assert_allclose(np.std(np.asarray(big)), 2.0 / 20.0, rtol=0.02)


@pytest.mark.parametrize("online,dale", [(False, True), (True, False)])
def test_mdgl_with_zero_modulatory_weights_equals_eprop(x64, online, dale):
  spec, params, traj, errors = make_net("relu_leaky", dale=dale)
  zero = jnp.zeros((N, N), jnp.float64)
  got = jax.jit(
    lambda p, tr, e: eprop.trace_grads(
      p,
      spec,
      tr,
      e,
      p["w_out"].T,
      self_coupling=True,
      online=online,
      modulation=eprop.matrix_modulation(zero),
    )
  )(params, traj, errors)
  assert relative_error(got, rule_grads("eprop", spec, params, traj, errors)) < 1e-10
  # ... while the modulatory term does change the gradient otherwise.
  assert (
    relative_error(
      rule_grads("mdgl", spec, params, traj, errors),
      rule_grads("eprop", spec, params, traj, errors),
    )
    > 1e-6
  )


def _one_hop_reference(spec, params, traj, errors, w_mod):
  """Past-facing one-hop influence (rules.md §1.8), built with explicit loops in numpy."""
  ones = jnp.ones(traj.x.shape[:2] + (1,), jnp.float64)
  a_hat = np.asarray(jnp.concatenate([traj.h_prev, traj.x, ones], -1))
  d = spec.alpha * np.asarray(traj.dphi)
  q = np.einsum("no,bto->btn", np.asarray(params["w_out"]).T, np.asarray(errors))
  w = np.asarray(rnn.effective_w_rec(params, spec))
  w_mod = np.asarray(w_mod)
  g = np.zeros((N, a_hat.shape[-1]))
  for b in range(B):
    e_prev = np.zeros_like(g)
    for t in range(errors.shape[1]):
      lam = (1 - spec.alpha) + d[b, t] * np.diag(w)
      e = lam[:, None] * e_prev + d[b, t][:, None] * a_hat[b, t][None, :]
      infl = np.zeros((N, N, g.shape[1]))  # M[k, p, :]
      for k in range(N):
        for p in range(N):
          infl[k, p] = e[p] if k == p else d[b, t, k] * w_mod[k, p] * e_prev[p]
      g += np.einsum("k,kpj->pj", q[b, t], infl)
      e_prev = e
  mask = np.asarray(rnn.recurrent_mask(spec, jnp.float64))
  return {"w_rec": g[:, :N] * mask, "w_in": g[:, N : N + N_IN], "b": g[:, -1]}


@pytest.mark.parametrize(
  "name,kind,dale",
  [
    ("mdgl", "tanh_leaky", True),
    ("mdgl", "relu_autapse", False),
    ("mdgl_exact", "relu_autapse", False),
  ],
)
def test_mdgl_matches_one_hop_definition(x64, name, kind, dale):
  spec, params, traj, errors = make_net(kind, dale=dale)
  weights = mdgl.type_averaged_weights if name == "mdgl" else mdgl.exact_one_hop_weights
  want = _one_hop_reference(spec, params, traj, errors, weights(params, spec))
  for online in (False, True):
    got = rule_grads(name, spec, params, traj, errors, online=online)
    assert relative_error({k: got[k] for k in want}, want) < 1e-10


def test_mdgl_type_averaged_weights_by_hand():
  spec = rnn.RNNSpec(1, 4, 1, dale=True, frac_exc=0.5)  # units 0, 1 E; 2, 3 I
  w = jnp.array(
    [[0.0, 1.0, -2.0, 0.0], [3.0, 0.0, -4.0, -6.0], [0.0, 5.0, 0.0, -1.0], [2.0, 0.0, -3.0, 0.0]]
  )
  p = {"w_rec": w}
  exists = np.asarray(w != 0, np.float64)
  ee, ei, ie, ii = 2.0, -4.0, 3.5, -2.0  # means of the non-zero entries of each block
  np.testing.assert_allclose(mdgl.block_means(p, spec), [[ee, ei], [ie, ii]])
  every = np.array([[0, ee, ei, ei], [ee, 0, ei, ei], [ie, ie, 0, ii], [ie, ie, ii, 0]])
  # Means over all off-diagonal entries, zeros included: EI (-2 + 0 - 4 - 6) / 4, IE 7 / 4.
  dense = np.array([[0, ee, -3, -3], [ee, 0, -3, -3], [1.75, 1.75, 0, ii], [1.75, 1.75, ii, 0]])
  z = jnp.array([[0.5, -1.0, 2.0, 0.25]])
  for synapses, want in (("existing", every * exists), ("all", every), ("dense", dense)):
    np.testing.assert_allclose(mdgl.type_averaged_weights(p, spec, synapses), want, rtol=1e-6)
    # The modulation (factored through per-type sums for "all" and "dense") equals z W~.
    got = mdgl.type_modulation(p, spec, synapses)(z)
    np.testing.assert_allclose(got, z @ want, rtol=1e-6, err_msg=synapses)
  # Without Dale: one type, one mean over the 9 existing synapses.
  one = spec._replace(dale=False)
  mean = (1 - np.eye(4)) * (np.sum(w) / 9)
  for synapses, want in (("existing", mean * exists), ("all", mean)):
    np.testing.assert_allclose(mdgl.type_averaged_weights(p, one, synapses), want, rtol=1e-6)
    np.testing.assert_allclose(mdgl.type_modulation(p, one, synapses)(z), z @ want, rtol=1e-6)
  with pytest.raises(ValueError, match="modulatory_synapses"):
    mdgl.type_averaged_weights(p, spec, "some")


@pytest.mark.parametrize(
  "name", ["tbptt", "eprop", "eprop_random", "rflo", "mdgl", "mdgl_exact", "three_factor_autodiff"]
)
@pytest.mark.parametrize("kind", ["tanh_leaky", "relu"])
def test_truncated_rules_are_partly_aligned(x64, name, kind):
  spec, params, traj, errors = make_net(kind, dale=name == "mdgl")
  got = rule_grads(name, spec, params, traj, errors, symmetric=True, truncation=2)
  cos = alignment.cosine_alignment(got, reference(spec, params, traj, errors))
  assert 0.0 < float(cos["recurrent"]) < 1.0 - 1e-6
  assert 0.0 < float(cos["w_rec"]) < 1.0 - 1e-6
  np.testing.assert_allclose([cos["w_out"], cos["b_out"]], 1.0, rtol=1e-12)


# --------------------------------------------------------------------------- registry


def test_rtrl_size_guard():
  spec = rnn.RNNSpec(28, 128, 10)
  with pytest.raises(ValueError, match="rtrl_max_params"):
    rules.make("rtrl", spec, ml_collections.ConfigDict(dict(rtrl_max_params=1000)))
  rules.make("rtrl", spec)  # P = 20,096 is within the default
  with pytest.raises(ValueError, match="rtrl_max_params"):
    rules.make("rtrl", rnn.RNNSpec(28, 512, 10))
  assert rtrl.num_params(spec) == 128 * 157


def test_unknown_rule_lists_names():
  with pytest.raises(ValueError) as info:
    rules.get("eprp")
  for name in rules.names():
    assert name in str(info.value)
  with pytest.raises(ValueError, match="three_factor_autodiff"):
    rules.make("eprp", rnn.RNNSpec(1, 2, 1))


@pytest.mark.parametrize(
  "field,value",
  [
    ("truncation", 0),
    ("truncation", 2.5),
    ("feedback_scale", 0.0),
    ("online", 1),
    ("self_coupling", "yes"),
    ("rtrl_max_params", -1),
  ],
)
def test_validate_names_the_field(field, value):
  options = rules.default_options()
  del options[field]
  options[field] = value
  with pytest.raises(ValueError, match=f"rule_options.{field}"):
    rules.validate("eprop", options)


def test_validate_rejects_unknown_option():
  with pytest.raises(ValueError, match="feedbak_scale"):
    rules.validate("rflo", ml_collections.ConfigDict(dict(feedbak_scale=1.0)))


# --------------------------------------------------------------------------- alignment


def test_cosine_alignment_by_hand():
  g = {
    "w_rec": jnp.array([[1.0, 0.0], [0.0, 2.0]]),
    "w_in": jnp.array([[1.0], [1.0]]),
    "b": jnp.array([0.0, 0.0]),
    "w_out": jnp.array([[3.0, 4.0]]),
    "b_out": jnp.array([1.0]),
  }
  r = {
    "w_rec": jnp.array([[1.0, 1.0], [0.0, 0.0]]),
    "w_in": jnp.array([[-1.0], [1.0]]),
    "b": jnp.array([1.0, 0.0]),
    "w_out": jnp.array([[3.0, 4.0]]),
    "b_out": jnp.array([2.0]),
  }
  cos = alignment.cosine_alignment(g, r)
  np.testing.assert_allclose(cos["w_rec"], 1 / (np.sqrt(5) * np.sqrt(2)), rtol=1e-6)
  np.testing.assert_allclose(cos["w_in"], 0.0, atol=1e-7)
  assert float(cos["b"]) == 0.0  # zero norm: cosine 0 by convention
  np.testing.assert_allclose(cos["w_out"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(cos["b_out"], 1.0, rtol=1e-6)
  # recurrent: dot = 1 + 0 + 0 = 1, |g|^2 = 5 + 2 + 0, |r|^2 = 2 + 2 + 1
  np.testing.assert_allclose(cos["recurrent"], 1 / np.sqrt(7 * 5), rtol=1e-6)
  # all: dot = 1 + 25 + 2 = 28, |g|^2 = 7 + 25 + 1, |r|^2 = 5 + 25 + 4
  np.testing.assert_allclose(cos["all"], 28 / np.sqrt(33 * 34), rtol=1e-6)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def smoke():
  """The smoke seq-MNIST config (one seed, short, at the reference lr) and its task."""
  from configs.seq_mnist import get_config

  base = get_config("smoke")
  base.num_seeds = 1
  # Short and at the reference learning rate: the smoke config's lr 0.02 trains
  # near the edge of stability, where a loss spike can blow up a truncated rule.
  base.num_steps = 150
  base.eval_every = 150
  base.optimizer.learning_rate = 1e-2
  base.task_options.train_eval_size = 256
  return base, tasks.make(base.task, base.task_options)


# SnAp stores RTRL's dense influence tensor (~1 TFLOP for this run); it learns a
# smaller task in test_rules_rtrl_approx.py.
TRAINED_RULES = tuple(n for n in rules.names() if n not in ("snap", "snap2"))


@pytest.fixture(scope="module")
def trained(smoke):
  """Trains every rule (and an alignment-probed run) on the smoke config in ONE program.

  One compilation for all runs costs about half as much as one per rule (XLA
  shares the common parts: sampling, forward pass, optimizer).
  """
  from credit.training.train import make_train, make_trainer

  base, task = smoke
  train_set = task.eval_sets["train"]

  def configured(rule, **changes):
    config = base.copy_and_resolve_references()
    config.rule = rule
    config.model.dale = rule.startswith("mdgl")  # MDGL with E/I cell types
    if rule in ("uoro", "r_kf_rtrl"):  # rank-one estimates: ~8x BPTT's norm here, too noisy
      config.optimizer.learning_rate = 3e-3  # for lr 1e-2 on every seed
    for k, v in changes.items():
      config[k] = v
    return config

  trainers = {name: make_trainer(configured(name), task=task, probes=()) for name in TRAINED_RULES}
  probed = configured("mdgl", num_seeds=2, num_steps=20, eval_every=10)
  probed.alignment.every = 20
  probed.alignment.batch_size = 32
  probed_train = make_train(probed, task=task)

  def loss(params, spec):
    return task.loss(rnn.outputs(params, spec, train_set.inputs), train_set)

  def run(key):
    out = {}
    for name, trainer in trainers.items():
      start = jax.vmap(trainer.init)(jax.random.split(key, base.num_seeds))
      end = jax.vmap(lambda s, t=trainer: t.run_chunk(s, base.num_steps))(start)
      before = jax.vmap(loss, in_axes=(0, None))(start.params, trainer.spec)
      after = jax.vmap(loss, in_axes=(0, None))(end.params, trainer.spec)
      out[name] = (before, after, end.diverged)
    _, out["probe_metrics"] = jax.vmap(probed_train)(jax.random.split(key, probed.num_seeds))
    return out

  return jax.device_get(jax.jit(run)(jax.random.key(base.seed)))


@pytest.mark.parametrize("name", TRAINED_RULES)
def test_rule_lowers_training_loss(trained, name):
  before, after, diverged = (np.asarray(v) for v in trained[name])
  assert not np.any(diverged) and np.all(np.isfinite(after))
  assert np.all(after < before - 0.1), (before, after)


def test_alignment_probe_inside_compiled_training(trained):
  metrics = trained["probe_metrics"]
  cos = np.asarray(metrics["align_cos"])  # [seeds, evaluations at steps 0, 10, 20]
  assert cos.shape == (2, 3)
  assert np.all(np.isnan(cos[:, 1]))
  # (Not necessarily positive: at this init BPTT's gradient is dominated by large
  # recurrent components that MDGL's one-hop credit does not see.)
  for name in alignment_probe.probe_metric_names(("w_rec", "w_in", "b", "w_out", "b_out")):
    v = np.asarray(metrics[name])[:, [0, 2]]
    assert np.all(np.isfinite(v)), name
    if name.startswith("align_cos"):
      assert np.all(np.abs(v) <= 1 + 1e-6), name
  np.testing.assert_allclose(np.asarray(metrics["align_cos_w_out"])[:, [0, 2]], 1.0, rtol=1e-5)


def test_alignment_probe_is_one_for_an_exact_rule_and_nan_between(smoke):
  base, task = smoke
  config = base.copy_and_resolve_references()
  config.alignment.every = 20
  config.alignment.batch_size = 16
  spec = rnn.RNNSpec(task.n_in, config.model.n_hidden, task.n_out)
  params = rnn.init_params(jax.random.key(0), spec)
  probe = alignment_probe.make_alignment_probe(config, spec, task, rules.make("rtrl", spec))
  run = jax.jit(probe)
  on = run(params, {}, jax.random.key(1), jnp.asarray(40, jnp.int32))
  off = run(params, {}, jax.random.key(1), jnp.asarray(30, jnp.int32))
  assert set(on) == set(alignment_probe.probe_metric_names(params))
  for name, value in on.items():
    np.testing.assert_allclose(value, 1.0, rtol=1e-5, err_msg=name)
    assert np.isnan(off[name])
