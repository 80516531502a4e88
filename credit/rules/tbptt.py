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

**Static loss steps.** When the task fixes the steps that carry a loss
(``Task.loss_steps``: seq-MNIST's last step) and their windows cover fewer than
``T`` steps in all, each loss step's window is backpropagated on its own, with
``q`` at its last step only, and the contraction runs over the windows' steps
alone: for one loss step that is BPTT's backward pass cut to ``K`` steps, so
the rule costs less than BPTT instead of ``K`` times its backward matmuls.
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules.base import (
  GradientRule,
  input_grads,
  learning_signal,
  no_state,
  presynaptic,
  readout_grads,
  split_packed,
)
from credit.rules.bptt import backward_credit
from credit.rules.eprop import from_first_step, loss_steps_option

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


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


def static_windows(loss_steps: tuple[int, ...], window: int, steps: int) -> list[np.ndarray] | None:
  """Each loss step's window ``(t-K, t]`` as step indices, or ``None`` when they cover more
  than the ``T`` steps (overlapping windows: the sliding buffer is cheaper)."""
  windows = [np.arange(max(0, t - window + 1), t + 1, dtype=np.int32) for t in loss_steps]
  return windows if sum(w.size for w in windows) <= steps else None


def static_window_grads(
  params: Params, spec: RNNSpec, traj: Trajectory, q: jax.Array, windows: list[np.ndarray]
) -> Params:
  r"""Input-side gradients from each window's own backward pass (``q`` at its last step only)."""
  w_rec = effective_w_rec(params, spec)
  d = spec.alpha * traj.dphi

  def body(carry, d_s):
    delta = d_s * carry
    return (1.0 - spec.alpha) * carry + delta @ w_rec, delta

  deltas = []
  for idx in windows:
    d_w = jnp.swapaxes(jnp.take(d, idx, axis=1), 0, 1)
    _, delta = jax.lax.scan(body, q[:, int(idx[-1])], d_w, reverse=True)
    deltas.append(jnp.swapaxes(delta, 0, 1))
  idx = np.concatenate(windows)
  a_hat = jnp.take(presynaptic(traj), idx, axis=1)
  g = jnp.einsum("bkn,bkm->nm", jnp.concatenate(deltas, axis=1), a_hat)
  return split_packed(g, spec)


def tbptt_grads(
  params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  window: int,
  loss_steps: tuple[int, ...] | None = None,
):
  q = learning_signal(params["w_out"].T, errors)
  windows = None if loss_steps is None else static_windows(loss_steps, window, q.shape[1])
  if windows is not None:
    return {**static_window_grads(params, spec, traj, q, windows), **readout_grads(traj, errors)}
  delta = windowed_credit(params, spec, traj, q, window)
  return {**input_grads(delta, traj, spec), **readout_grads(traj, errors)}


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  window = int(options.truncation)
  loss_steps = loss_steps_option(options)
  # Each loss step reaches back through its window alone: earlier steps are never read.
  first = 0 if loss_steps is None else max(min(loss_steps) - window + 1, 0)
  loss_steps = from_first_step(loss_steps, first)

  def grads(params, state, traj, errors, key):
    del state, key
    return tbptt_grads(params, spec, traj, errors, window, loss_steps)

  # Not flagged exact: whether K >= T depends on the task's sequence length.
  return GradientRule(name="tbptt", init=no_state, grads=grads, first_step=first)
