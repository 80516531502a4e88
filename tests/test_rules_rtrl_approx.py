"""RTRL approximations: UORO and KF-RTRL are unbiased, SnAp-n is exact or e-prop, they learn.

Numerics run in float64 on tiny networks (N = 5, N_in = 2, N_out = 2, T = 6,
B = 2) with random inputs, initial states and output errors at every step;
the reference gradient is exact RTRL (itself equal to BPTT, see test_rules.py).
"""

import functools

from credit import losses, rules
from credit.models import rnn
from credit.rules import snap
from credit.tasks.base import Batch
from credit.theory import update_map

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.conftest import random_network, relative_error, xent_task

N, N_IN, N_OUT, T, B = 5, 2, 2, 6, 2
RECURRENT = ("w_rec", "w_in", "b")


def make_net(w_rec: np.ndarray, alpha=0.7, activation="tanh", no_autapse=False):
  """A network with the given ``W_rec``, its trajectory and per-step output errors (float64)."""
  spec = rnn.RNNSpec(N_IN, N, N_OUT, alpha=alpha, activation=activation, no_autapse=no_autapse)
  rng = np.random.default_rng(0)
  return random_network(spec, w_rec, rng, B, T, w_in_std=1.0)


def dense_w_rec(seed=1) -> np.ndarray:
  """Dense, with a non-zero diagonal (self-coupling matters when autapses are allowed)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(0, np.sqrt(2 / N), (N, N))
  w[np.diag_indices(N)] = 0.5 * np.arange(1, N + 1) / N
  return w


def ring_w_rec() -> np.ndarray:
  """Unit ``i`` drives unit ``i + 1 (mod N)`` only: the longest shortest path has N - 1 hops."""
  rng = np.random.default_rng(2)
  w = np.zeros((N, N))
  w[(np.arange(N) + 1) % N, np.arange(N)] = rng.uniform(0.8, 1.5, N)
  return w


def longest_shortest_path(w: np.ndarray) -> int:
  """Hops of the longest shortest path ``i -> k`` (edge ``i -> k`` where ``w[k, i] != 0``)."""
  n = w.shape[0]
  dist = np.where(w != 0, 1.0, np.inf)
  np.fill_diagonal(dist, 0.0)
  for p in range(n):  # Floyd-Warshall
    dist = np.minimum(dist, dist[:, p : p + 1] + dist[p : p + 1, :])
  assert np.all(np.isfinite(dist)), "the test graph must be strongly connected"
  return int(dist.max())


@functools.cache
def _jitted(name, spec, options):
  return jax.jit(rules.make(name, spec, ml_collections.ConfigDict(dict(options))).grads)


def grads(name, spec, params, traj, errors, key=None, **options):
  """Rule ``name``'s gradient (jitted once per rule, network and options)."""
  key = jax.random.key(0) if key is None else key
  return _jitted(name, spec, tuple(sorted(options.items())))(params, {}, traj, errors, key)


def flat(g) -> jax.Array:
  return jnp.concatenate([jnp.ravel(g[k]) for k in RECURRENT])


# --------------------------------------------------------------------------- unbiasedness


@functools.cache
def _samples(name: str, count: int):
  """``count`` independent estimates of the recurrent gradient, and RTRL's."""
  spec, params, traj, errors = make_net(dense_w_rec(), no_autapse=True)
  rule = rules.make(name, spec)

  def one(key):
    return flat(rule.grads(params, {}, traj, errors, key))

  keys = jax.random.split(jax.random.key(7), count)
  samples = np.asarray(jax.jit(jax.vmap(one))(keys))
  # vmapped over keys (as over seeds), each estimate is the one its key gives alone.
  np.testing.assert_allclose(samples[1], flat(grads(name, spec, params, traj, errors, keys[1])))
  exact = np.asarray(flat(grads("rtrl", spec, params, traj, errors)))
  eprop = np.asarray(flat(grads("eprop", spec, params, traj, errors)))
  return samples, exact, eprop


@pytest.mark.parametrize("name", rules.STOCHASTIC_RULES)
def test_estimate_is_unbiased(x64, name):
  n = 2000
  samples, exact, eprop = _samples(name, 4 * n)
  assert np.std(samples, axis=0).max() > 1e-3 * np.abs(exact).max()  # a random estimate
  errors, ses = [], []
  for count in (n, 4 * n):
    mean = samples[:count].mean(axis=0)
    se = samples[:count].std(axis=0, ddof=1) / np.sqrt(count)
    random = se > 0
    # The masked diagonal of W_rec has no randomness: exactly zero.
    assert np.sum(~random) == N and np.all(mean[~random] == 0) and np.all(exact[~random] == 0)
    z = (mean - exact)[random] / se[random]
    # Unbiased: every entry within a few standard errors, and the standardized errors
    # of the ~40 entries are of order one (a bias would grow them as sqrt(count)).
    assert np.max(np.abs(z)) < 5.0, (count, np.max(np.abs(z)))
    assert np.mean(z**2) < 4.0, (count, np.mean(z**2))
    errors.append(np.linalg.norm(mean - exact))
    ses.append(np.linalg.norm(se))
  # The confidence interval shrinks as 1/sqrt(n): a quarter of the variance at 4n ...
  assert 0.4 < ses[1] / ses[0] < 0.6, ses
  # ... and the error with it.
  assert errors[1] < 0.8 * errors[0], errors
  # The interval is tight enough to see a bias of e-prop's size (measured: 10-26 SE).
  assert np.linalg.norm(eprop - exact) > 5 * ses[1]


@pytest.mark.parametrize("name", ["uoro", "kf_rtrl", "r_kf_rtrl"])
@pytest.mark.parametrize("loss_steps", [(T - 1,), (2,), (0, 3), (1, 2, T - 1)])
def test_estimate_at_static_loss_steps_equals_the_every_step_scan(x64, name, loss_steps):
  """With errors zero off the loss steps, the segmented scan gives the same estimate."""
  spec, params, traj, errors = make_net(dense_w_rec())
  keep = np.zeros((1, T, 1))
  keep[:, list(loss_steps)] = 1.0
  errors = errors * keep
  rule = rules.make(name, spec, None, loss_steps)
  got = jax.jit(rule.grads)(params, {}, traj, errors, jax.random.key(3))
  want = grads(name, spec, params, traj, errors, jax.random.key(3))
  assert relative_error(got, want) < 1e-12


def _uoro_materialized(params, spec, traj, errors, key):
  """UORO with its N x m factor formed and rescaled at every step (Tallec & Ollivier)."""
  from credit.rules import influence

  w_rec = rnn.effective_w_rec(params, spec)
  m = spec.n_hidden + spec.n_in + 1
  noise = influence.signs(key, traj.x.shape[:2] + (spec.n_hidden,), traj.h.dtype)

  def step(carry, x):
    a_tilde, b_tilde = carry
    j_a = influence.jacobian_apply(w_rec, spec.alpha, x.d, a_tilde)
    m_nu = (x.noise * x.d)[:, None] * x.a[None, :]
    rho0 = influence.scaling(b_tilde, j_a)
    rho1 = influence.scaling(m_nu, x.noise)
    return rho0 * j_a + rho1 * x.noise, b_tilde / rho0 + m_nu / rho1

  def grad_at(carry, x):
    return jnp.dot(x.q, carry[0]) * carry[1]

  init = (jnp.zeros(spec.n_hidden), jnp.zeros((spec.n_hidden, m)))
  return influence.run_estimate(step, grad_at, init, params, spec, traj, errors, noise)


@pytest.mark.parametrize("loss_steps", [None, (T - 1,), (1, 3)])
def test_uoro_gram_form_equals_the_materialized_factor(x64, loss_steps):
  spec, params, traj, errors = make_net(dense_w_rec())
  if loss_steps is not None:
    keep = np.zeros((1, T, 1))
    keep[:, list(loss_steps)] = 1.0
    errors = errors * keep
  rule = rules.make("uoro", spec, None, loss_steps)
  for k in (0, 1):
    got = jax.jit(rule.grads)(params, {}, traj, errors, jax.random.key(k))
    want = jax.jit(_uoro_materialized, static_argnums=1)(
      params, spec, traj, errors, jax.random.key(k)
    )
    assert relative_error(got, want) < 1e-10


def test_kf_rtrl_is_exact_for_one_step(x64):
  # M_1 = diag(D_1) (x) a_1 is a Kronecker product: nu_1^2 = 1 leaves no noise.
  spec, params, traj, errors = make_net(dense_w_rec())
  one = traj._replace(**{f: getattr(traj, f)[:, :1] for f in ("x", "h", "u", "dphi", "y")})
  got = [grads("kf_rtrl", spec, params, one, errors[:, :1], jax.random.key(k)) for k in (0, 1)]
  want = grads("bptt", spec, params, one, errors[:, :1])
  assert relative_error(got[0], want) < 1e-12
  assert relative_error(got[1], want) < 1e-12


def test_forward_mode_through_an_estimate_matches_finite_differences(x64):
  # The rule's update map (credit.theory) differentiates the estimate at a fixed key:
  # the guarded norms keep it finite at the zero factors of the first step.
  spec, params, traj, _ = make_net(dense_w_rec())
  rng = np.random.default_rng(4)
  targets = jax.nn.one_hot(jnp.asarray(rng.integers(0, N_OUT, (B, T))), N_OUT, dtype=jnp.float64)
  batch = Batch(traj.x, targets, jnp.ones((B, T), jnp.float64))
  rule = rules.make("uoro", spec)
  assert not update_map.rule_needs_finite_differences(
    rule, spec, params, {}, batch, jax.random.key(5)
  )
  args = (rule, spec, xent_task(spec), 0.0, params, {}, batch, jax.random.key(5), ("w_rec",))
  v = {"w_rec": jnp.asarray(rng.normal(size=(N, N)))}
  jvp = update_map.make_rule_jvp(*args, method="jvp")(v)
  fd = update_map.make_rule_jvp(*args, method="fd")(v)
  assert np.all(np.isfinite(np.asarray(jvp["w_rec"])))
  assert relative_error(jvp, fd) < 1e-5


# --------------------------------------------------------------------------- SnAp


def test_snap_with_a_dense_network_is_rtrl(x64):
  spec, params, traj, errors = make_net(dense_w_rec())
  assert longest_shortest_path(np.asarray(params["w_rec"])) == 1
  want = grads("rtrl", spec, params, traj, errors)
  assert relative_error(grads("snap2", spec, params, traj, errors), want) < 1e-10
  assert relative_error(grads("bptt", spec, params, traj, errors), want) < 1e-10


def test_snap_beyond_the_path_length_is_rtrl(x64):
  spec, params, traj, errors = make_net(ring_w_rec(), alpha=1.0, no_autapse=True)
  hops = longest_shortest_path(np.asarray(params["w_rec"]))
  assert hops == N - 1
  want = grads("bptt", spec, params, traj, errors)
  err = {
    order: relative_error(grads("snap", spec, params, traj, errors, snap_order=order), want)
    for order in (2, hops, hops + 1)
  }
  assert err[hops + 1] < 1e-10, err
  # One hop short, the dropped entries matter (T = 6 steps reach them); fewer hops, more so.
  assert err[hops] > 1e-4 and err[2] > err[hops], err


def test_snap2_keeps_the_two_step_pattern(x64):
  spec, params, traj, errors = make_net(ring_w_rec(), no_autapse=True)
  w = np.asarray(params["w_rec"])
  pattern = np.asarray(snap.sparsity_pattern(params["w_rec"], 2))
  np.testing.assert_array_equal(pattern, ((np.eye(N) + (w != 0)) > 0).astype(float))
  got = grads("snap2", spec, params, traj, errors)
  want = grads("snap", spec, params, traj, errors, snap_order=2)
  assert relative_error(got, want) == 0.0


def test_snap1_is_eprop_with_self_coupling(x64):
  spec, params, traj, errors = make_net(dense_w_rec(), alpha=0.7, activation="relu")
  assert not spec.no_autapse and np.all(np.diag(np.asarray(params["w_rec"])) != 0)
  got = grads("snap", spec, params, traj, errors, snap_order=1)
  want = grads("eprop", spec, params, traj, errors, self_coupling=True)
  assert relative_error(got, want) < 1e-10
  # The self-coupling matters here: the leak-only trace differs.
  leak_only = grads("eprop", spec, params, traj, errors, self_coupling=False)
  assert relative_error(got, leak_only) > 1e-4


def test_snap_size_guard_and_order_validation():
  spec = rnn.RNNSpec(28, 512, 10)
  for name in ("snap", "snap2"):
    with pytest.raises(ValueError, match=f"{name}: .*rtrl_max_params"):
      rules.make(name, spec)
  for bad in (0, 1.5, True):
    options = rules.default_options()
    del options["snap_order"]
    options["snap_order"] = bad
    with pytest.raises(ValueError, match="rule_options.snap_order"):
      rules.validate("snap", options)


# --------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def recall_results():
  """Trains on recalling the sign of a pulse at t = 1 at the last step (T = 6).

  With ``alpha = 1`` and a weak initial ``W_rec`` the pulse has faded by the end:
  the readout alone cannot solve the task, nor can e-prop, whose credit never
  crosses from one unit to another; cross-unit credit through time can.
  """
  with jax.enable_x64(True):
    n, steps, batch, lr = 8, 300, 32, 0.5
    spec = rnn.RNNSpec(1, n, 2, alpha=1.0, activation="tanh")
    rng = np.random.default_rng(0)
    params = {
      "w_in": rng.normal(0, 1, (n, 1)),
      "w_rec": rng.normal(0, 0.3 / np.sqrt(n), (n, n)),
      "b": np.zeros(n),
      "w_out": rng.normal(0, np.sqrt(1 / n), (2, n)),
      "b_out": np.zeros(2),
    }
    params = rnn.project({k: jnp.asarray(v, jnp.float64) for k, v in params.items()}, spec)
    mask = jnp.zeros((batch, T)).at[:, -1].set(1.0)

    def sample(key):
      sign = jax.random.rademacher(key, (batch,), jnp.float64)
      x = jnp.zeros((batch, T, 1), jnp.float64).at[:, 0, 0].set(sign)
      labels = jax.nn.one_hot((sign > 0).astype(jnp.int32), 2, dtype=jnp.float64)
      return x, jnp.broadcast_to(labels[:, None], (batch, T, 2))

    def loss(p, x, targets):
      return losses.cross_entropy(rnn.forward(p, spec, x).y, targets, mask)

    def train(name):
      rule = rules.make(name, spec)

      def step(p, key):
        k_batch, k_rule = jax.random.split(key)
        x, targets = sample(k_batch)
        traj = rnn.forward(p, spec, x)
        errors = jax.grad(lambda y: losses.cross_entropy(y, targets, mask))(traj.y)
        g = rule.grads(p, {}, traj, errors, k_rule)
        return rnn.project(jax.tree.map(lambda a, b: a - lr * b, p, g), spec), None

      end, _ = jax.lax.scan(step, params, jax.random.split(jax.random.key(0), steps))
      return end

    x, targets = sample(jax.random.key(99))
    names = ("uoro", "kf_rtrl", "snap2", "eprop")
    ends = jax.jit(lambda: {name: train(name) for name in names})()
    out = {name: float(loss(p, x, targets)) for name, p in ends.items()}
    out["init"] = float(loss(params, x, targets))
    return out


@pytest.mark.parametrize("name", ["uoro", "kf_rtrl", "snap2"])
def test_rule_learns_a_recall_task_that_eprop_cannot(recall_results, name):
  assert abs(recall_results["init"] - np.log(2)) < 0.02
  assert recall_results["eprop"] > 0.6  # local credit does not carry the pulse
  assert recall_results[name] < 0.05, recall_results
