r"""Real-time recurrent learning: the exact gradient carried forward in time.

The influence tensor :math:`M_t[k, i, j] = \partial h_{t,k} / \partial W_{ij}`
(``W = [W_rec | W_in | b]``, ``[N, N, m]`` per example) follows

.. math::

  M_t = J_t M_{t-1} + \bar M_t, \qquad
  J_t M = (1-\alpha) M + D_t \odot (W_{rec} \cdot_1 M), \qquad
  \bar M_t[k, i, :] = \delta_{ki} D_{t,i} \hat a_t,

from :math:`M_0 = 0`, and the gradient is :math:`\sum_t q_t^\top M_t` with
:math:`q_t = W_{out}^\top e_t`. At fixed weights this is the exact gradient
(equal to BPTT); it costs ``O(N^2 m)`` memory and ``O(N^3 m)`` compute per
example and step, so the rule refuses networks whose recurrent-side parameter
count :math:`P = N m` exceeds ``rule_options.rtrl_max_params``.

Since it is exact, training takes the fused ``value_and_grad`` path
(``autodiff=True``); the influence tensor is built when ``grads`` is called
(tests, gradient alignment).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules import eligibility_trace as et
from credit.rules.base import GradientRule, learning_signal, no_state, readout_grads

import jax
import jax.numpy as jnp
import ml_collections


def num_params(spec: RNNSpec) -> int:
  """Recurrent-side parameters ``P = N (N + N_in + 1)``; the influence tensor has ``N P``."""
  return spec.n_hidden * (spec.n_hidden + spec.n_in + 1)


def check_size(spec: RNNSpec, max_params: int, rule: str = "rtrl") -> None:
  """Refuses a network whose full influence tensor is above the size guard."""
  p = num_params(spec)
  if p > max_params:
    raise ValueError(
      f"{rule}: the network has P = N*(N+N_in+1) = {p} recurrent-side parameters, above "
      f"rule_options.rtrl_max_params={max_params} (the influence tensor would hold "
      f"N*P = {spec.n_hidden * p} entries per example); raise rule_options.rtrl_max_params "
      "or use a smaller network"
    )


def rtrl_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  keep: jax.Array | None = None,
) -> Params:
  """Exact gradient by forward propagation of the full influence tensor.

  ``keep`` (``[N(k), N(i)]`` of 0/1, optional) masks the propagated influence at
  every step before the immediate term is added: SnAp's sparsity pattern
  (:mod:`credit.rules.snap`); ``None`` keeps every entry (exact RTRL).
  """
  w_rec = effective_w_rec(params, spec)
  q = learning_signal(params["w_out"].T, errors)
  a_hat = et.presynaptic(traj)
  d = spec.alpha * traj.dphi
  batch, _, m = a_hat.shape
  n = spec.n_hidden
  idx = jnp.arange(n)

  def body(carry, inputs):
    mt, g = carry  # mt: [B, N(k), N(i), m(j)]
    a_t, d_t, q_t = inputs
    mt = (1.0 - spec.alpha) * mt + d_t[:, :, None, None] * jnp.einsum("kp,bpij->bkij", w_rec, mt)
    if keep is not None:
      mt = keep[None, :, :, None] * mt
    mt = mt.at[:, idx, idx, :].add(d_t[:, :, None] * a_t[:, None, :])
    g = g + jnp.einsum("bk,bkij->ij", q_t, mt)
    return (mt, g), None

  dtype = traj.h.dtype
  init = (jnp.zeros((batch, n, n, m), dtype), jnp.zeros((n, m), dtype))
  xs = tuple(jnp.swapaxes(v, 0, 1) for v in (a_hat, d, q))
  (_, g), _ = jax.lax.scan(body, init, xs)
  return {**et.split_packed(g, spec), **readout_grads(traj, errors)}


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  check_size(spec, int(options.rtrl_max_params))

  def grads(params, state, traj, errors, key):
    del state, key
    return rtrl_grads(params, spec, traj, errors)

  return GradientRule(name="rtrl", init=no_state, grads=grads, exact=True, autodiff=True)
