r"""Truncated BPTT with a sliding window of ``K`` steps (Williams & Peng's BPTT(h), h = K).

**Definition.** The loss at step ``t`` is backpropagated through its own step
and at most ``K - 1`` earlier ones: it reaches the parameters only through
steps :math:`s \in (t-K, t]`, the state :math:`h_{t-K}` being held constant.
So each step's loss is backpropagated at most ``K`` steps into the past and
the future-facing credit of step ``s`` collects the losses of steps
:math:`s .. s+K-1` only:

.. math::

  c_s = \sum_{t=s}^{\min(s+K-1, T)} J_{s+1}^\top \cdots J_t^\top q_t, \qquad
  \delta_s = D_s \odot c_s, \qquad \nabla W = \sum_s \delta_s \hat a_s^\top,

with the exact Jacobian :math:`J_t = (1-\alpha) I + \mathrm{diag}(D_t) W_{rec}` and
:math:`q_t = W_{out}^\top e_t`. ``K = 1`` keeps only the immediate step (the
leak path is truncated as well); ``K >= T`` is exact BPTT. For seq-MNIST (loss
on the last step only) this is the gradient of the loss through the last
``K`` steps.

**Implementation.** A backward scan carries the ``K - 1`` partially propagated
credits :math:`J_{s+1}^\top \cdots J_{s+a}^\top q_{s+a}` (``a = 1 .. K-1``), one
per loss step still inside its window; each step shifts the buffer by one,
enters :math:`q_s` and drops the credit that has travelled ``K`` steps. Cost:
``K`` times BPTT's backward matmuls (``min(K, T)``; ``K >= T`` uses BPTT's
backward pass directly).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules.base import GradientRule, input_grads, learning_signal, no_state, readout_grads
from credit.rules.bptt import backward_credit

import jax
import jax.numpy as jnp
import ml_collections


def windowed_credit(
  params: Params, spec: RNNSpec, traj: Trajectory, q: jax.Array, window: int
) -> jax.Array:
  r"""Truncated credits :math:`\delta_s = D_s c_s` (see the module docstring), ``[B, T, N]``."""
  steps = q.shape[1]
  if window >= steps:
    return backward_credit(params, spec, traj, q)
  w_rec = effective_w_rec(params, spec)
  d = spec.alpha * traj.dphi

  def body(buf, inputs):
    # buf[:, a-1] = J_{s+1}^T ... J_{s+a}^T q_{s+a}, a = 1 .. K-1.
    q_s, d_s = inputs
    full = jnp.concatenate([q_s[:, None], buf], axis=1)  # a = 0 .. K-1
    c = jnp.sum(full, axis=1)
    delta = d_s * c
    # Propagate all but the oldest credit one step further back: J_s^T v.
    keep = full[:, :-1]
    buf = (1.0 - spec.alpha) * keep + (d_s[:, None] * keep) @ w_rec
    return buf, delta

  batch, _, n = q.shape
  init = jnp.zeros((batch, window - 1, n), q.dtype)
  _, delta = jax.lax.scan(body, init, (jnp.swapaxes(q, 0, 1), jnp.swapaxes(d, 0, 1)), reverse=True)
  return jnp.swapaxes(delta, 0, 1)


def tbptt_grads(params, spec: RNNSpec, traj: Trajectory, errors: jax.Array, window: int):
  q = learning_signal(params["w_out"].T, errors)
  delta = windowed_credit(params, spec, traj, q, window)
  return {**input_grads(delta, traj, spec), **readout_grads(traj, errors)}


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  window = int(options.truncation)

  def grads(params, state, traj, errors, key):
    del state, key
    return tbptt_grads(params, spec, traj, errors, window)

  # Not flagged exact: whether K >= T depends on the task's sequence length.
  return GradientRule(name="tbptt", init=no_state, grads=grads)
