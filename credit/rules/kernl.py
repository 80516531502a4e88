r"""KeRNL (Roth, Kanitscheider & Fiete, ICLR 2019): learned kernels of the eligibility trace.

The influence of a synapse on the network is approximated by a learned
sensitivity matrix :math:`A` and learned per-neuron kernels
:math:`k_i = \min(1, \max(0, 1 - \gamma_i))` (rules.md §1.11):

.. math::

  M_t[k, (i, j)] \approx A_{ki} B_t[i, j], \qquad
  B_t = k \odot B_{t-1} + D_t \hat a_t^\top, \qquad
  \nabla W = \sum_t (A^\top q_t) \odot B_t,

with :math:`q_t = W_{out}^\top e_t`, :math:`D_t = \alpha\phi'(u_t)` and
:math:`\hat a_t = [h_{t-1}; x_t; 1]`. This is the e-prop trace
(:mod:`credit.rules.eligibility_trace`) with the decay :math:`k` and the learning
signal :math:`A^\top q_t`, so it runs online (traces carried forward) or offline
(the equivalent backward filter), ``rule_options.online``.

**Learning A and k.** :math:`A_{ki} k_i^{d}` stands for the response of
:math:`h_{t,k}` to a perturbation of :math:`h_{t-d,i}`. A perturbed copy of
the network gets noise :math:`\zeta_t` added to its state at every step; the
kernels fit its deviation :math:`\delta h_t = \tilde h_t - h_t` by

.. math::

  \Omega_t = k \odot \Omega_{t-1} + \zeta_t, \qquad
  \Gamma_t = k \odot \Gamma_{t-1} - \Omega_{t-1}
  \;(= \partial\Omega_t/\partial\gamma), \qquad
  \epsilon_t = A \Omega_t - \delta h_t,

.. math::

  \nabla_A = \langle \epsilon_t \Omega_t^\top \rangle, \qquad
  \nabla_\gamma = \langle (A^\top \epsilon_t) \odot \Gamma_t \rangle,

averaged over the batch and the steps, and one Adam step
(``rule_options.kernl_learning_rate``) per training batch
(:attr:`~credit.rules.base.GradientRule.update_state`). The noise enters the
perturbed state at the same step as :math:`\Omega` (the paper's Algorithm 1
timing; vanilla-rtrl injects it one step later). The deviation is taken to
first order in the noise and per unit noise, :math:`\delta h_t = J_t \delta
h_{t-1} + \zeta_t` with :math:`\zeta_t \sim N(0, I)` and the exact Jacobian
:math:`J_t = (1-\alpha) I + \mathrm{diag}(D_t) W_{rec}` along the trajectory: the
small-noise limit of the perturbed copy (vanilla-rtrl's sigma = 1e-5), without
the cancellation of subtracting two nearby states in float32, and with
gradients that do not scale with sigma^2.

**Initial state.** :math:`A = I` and :math:`\gamma = \alpha` (:math:`k = 1-\alpha`,
the leak): KeRNL starts as leak-only e-prop with symmetric feedback (RFLO with
``B = W_out^T``; rules.md §3's reduction test), vanilla-rtrl's defaults being
:math:`A = I`, :math:`\gamma = 0.8`. The state (``{"a", "gamma", "opt"}``) is
per seed and checkpointed with the rest of the train state.

Cost per step: the trace ``N m`` (online) plus ``N^2`` for :math:`A^\top q_t`;
learning :math:`A, k` costs one linearized pass (``N^2`` per step) and
``N^2`` per step for the fit.
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules import eligibility_trace as et
from credit.rules.base import GradientRule, learning_signal, readout_grads

import jax
import jax.numpy as jnp
import ml_collections
import optax


def kernels(gamma: jax.Array) -> jax.Array:
  r"""Per-neuron kernels :math:`k = \min(1, \max(0, 1 - \gamma))`."""
  return jnp.clip(1.0 - gamma, 0.0, 1.0)


def kernl_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  a: jax.Array,
  gamma: jax.Array,
  online: bool,
) -> Params:
  r"""KeRNL's gradient (exact readout) for sensitivities ``a [N, N]`` and rates ``gamma [N]``."""
  q = learning_signal(params["w_out"].T, errors)
  signal = q @ a  # (A^T q_t)_i = sum_k A_ki q_t,k
  decay = jnp.broadcast_to(kernels(gamma), traj.dphi.shape)
  if online:
    grads = et.online_grads(spec, traj, signal, decay)
  else:
    grads = et.offline_grads(spec, traj, signal, decay, active=et.credited_steps(errors, decay))
  return {**grads, **readout_grads(traj, errors)}


def linear_response(params: Params, spec: RNNSpec, traj: Trajectory, noise: jax.Array):
  r"""The linearized response :math:`\delta h_t = J_t \delta h_{t-1} + \zeta_t`, ``[B, T, N]``.

  From :math:`\delta h_0 = 0`, with the trajectory's Jacobians.
  """
  w_t = effective_w_rec(params, spec).T
  d = spec.alpha * traj.dphi

  def body(dh, inputs):
    d_t, z_t = inputs
    dh = (1.0 - spec.alpha) * dh + d_t * (dh @ w_t) + z_t
    return dh, dh

  xs = (jnp.swapaxes(d, 0, 1), jnp.swapaxes(noise, 0, 1))
  _, dh = jax.lax.scan(body, jnp.zeros_like(noise[:, 0]), xs)
  return jnp.swapaxes(dh, 0, 1)


def kernel_fit_grads(a: jax.Array, gamma: jax.Array, noise: jax.Array, response: jax.Array):
  r"""Gradients of the kernel fit :math:`\frac12 \langle \|A\Omega_t - \delta h_t\|^2 \rangle`.

  Args:
    a: :math:`A` ``[N, N]``.
    gamma: :math:`\gamma` ``[N]``.
    noise: :math:`\zeta_t` ``[B, T, N]``.
    response: :math:`\delta h_t` ``[B, T, N]``.

  Returns:
    ``({"a": grad_A, "gamma": grad_gamma}, mean squared fit error)``, means over
    batch and steps; :math:`\partial\Omega/\partial\gamma` by the recursion of
    the module docstring.
  """
  k = kernels(gamma)

  def body(carry, inputs):
    omega, big_gamma = carry
    z_t, dh_t = inputs
    big_gamma = k * big_gamma - omega
    omega = k * omega + z_t
    err = omega @ a.T - dh_t
    g_a = jnp.einsum("bk,bi->ki", err, omega)
    g_gamma = jnp.sum((err @ a) * big_gamma, axis=0)
    return (omega, big_gamma), (g_a, g_gamma, jnp.sum(err**2))

  zeros = jnp.zeros_like(noise[:, 0])
  xs = (jnp.swapaxes(noise, 0, 1), jnp.swapaxes(response, 0, 1))
  _, (g_a, g_gamma, sq) = jax.lax.scan(body, (zeros, zeros), xs)
  count = noise.shape[0] * noise.shape[1]
  return {"a": jnp.sum(g_a, 0) / count, "gamma": jnp.sum(g_gamma, 0) / count}, jnp.sum(sq) / count


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  online = bool(options.online)
  optimizer = optax.adam(float(options.kernl_learning_rate))

  def init(key, params):
    del key
    dtype = params["w_rec"].dtype
    learned = {
      "a": jnp.eye(spec.n_hidden, dtype=dtype),
      "gamma": jnp.full((spec.n_hidden,), spec.alpha, dtype),
    }
    return {**learned, "opt": optimizer.init(learned)}

  def grads(params, state, traj, errors, key):
    del key
    return kernl_grads(params, spec, traj, errors, state["a"], state["gamma"], online)

  def update_state(params, state, traj, errors, key):
    del errors
    noise = jax.random.normal(key, traj.dphi.shape, traj.dphi.dtype)
    response = linear_response(params, spec, traj, noise)
    learned = {"a": state["a"], "gamma": state["gamma"]}
    g, _ = kernel_fit_grads(learned["a"], learned["gamma"], noise, response)
    updates, opt = optimizer.update(g, state["opt"], learned)
    return {**optax.apply_updates(learned, updates), "opt": opt}

  return GradientRule(name="kernl", init=init, grads=grads, update_state=update_state)
