r"""Backpropagation through time: the exact gradient, the reference for every rule.

From the stored trajectory, credit flows backward through the exact Jacobian
:math:`J_{t+1} = (1-\alpha) I + \mathrm{diag}(D_{t+1}) W_{rec}` with
:math:`D_t = \alpha \phi'(u_t)`:

.. math::

  c_T = q_T, \qquad c_t = q_t + J_{t+1}^\top c_{t+1}, \qquad
  \delta_t = D_t \odot c_t,

where :math:`q_t = W_{out}^\top e_t`. Then :math:`\nabla W_{rec} = \sum_t \delta_t
h_{t-1}^\top` and likewise for ``W_in`` and ``b``: one contraction of the
credits against the packed presynaptic vectors ``[B*T, N + N_in + 1]``
after the backward recursion, instead of reverse mode's per-step weight
products inside the scan. It equals ``jax.grad`` through the forward scan
(``tests/test_rules.py``) and is what training uses: on 2 CPU cores it is
faster than ``jax.value_and_grad`` (``benchmarks/train_step.py``).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules.base import GradientRule, input_grads, learning_signal, no_state, readout_grads

import jax
import jax.numpy as jnp
import ml_collections


def backward_credit(params: Params, spec: RNNSpec, traj: Trajectory, q: jax.Array) -> jax.Array:
  r"""Runs :math:`c_t = q_t + J_{t+1}^\top c_{t+1}` backward; returns :math:`\delta_t = D_t c_t`."""
  w_rec = effective_w_rec(params, spec)
  d = spec.alpha * traj.dphi  # [B, T, N]

  def body(carry, inputs):
    q_t, d_t = inputs
    c = q_t + carry  # carry holds J_{t+1}^T c_{t+1}
    delta = d_t * c
    return (1.0 - spec.alpha) * c + delta @ w_rec, delta

  zeros = jnp.zeros_like(q[:, 0])
  _, delta = jax.lax.scan(body, zeros, (jnp.swapaxes(q, 0, 1), jnp.swapaxes(d, 0, 1)), reverse=True)
  return jnp.swapaxes(delta, 0, 1)


def bptt_grads(params: Params, state, traj: Trajectory, errors: jax.Array, key, *, spec: RNNSpec):
  del state, key
  q = learning_signal(params["w_out"].T, errors)
  delta = backward_credit(params, spec, traj, q)
  return {**input_grads(delta, traj, spec), **readout_grads(traj, errors)}


def make(spec: RNNSpec, options: ml_collections.ConfigDict | None = None) -> GradientRule:
  del options
  return GradientRule(
    name="bptt",
    init=no_state,
    grads=lambda p, s, tr, e, k: bptt_grads(p, s, tr, e, k, spec=spec),
    exact=True,
  )
