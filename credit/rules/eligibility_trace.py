r"""The eligibility-trace core shared by e-prop, random e-prop, RFLO and MDGL.

Every rule of this family keeps, for each synapse ``W[i, j]`` (``j`` over the
presynaptic vector :math:`\hat a_t = [h_{t-1}; x_t; 1]`), a trace that follows
only the postsynaptic neuron's own dynamics:

.. math::

  E_t[i, j] = \lambda_{t,i} E_{t-1}[i, j] + D_{t,i} \hat a_{t,j}, \qquad E_0 = 0,

with :math:`D_t = \alpha \phi'(u_t)` and the per-neuron decay
:math:`\lambda_{t,i} = (1-\alpha) + D_{t,i} W_{rec,ii}` (leak and self-coupling,
the diagonal of the exact Jacobian :math:`J_t`) or :math:`1-\alpha` (leak only).
The gradient pairs the trace with a learning signal :math:`L_t` and, for MDGL,
the previous trace with a modulatory signal :math:`m_t`:

.. math::

  g = \sum_t L_t \odot E_t + m_t \odot E_{t-1}.

Two implementations give the same gradient while the weights are fixed over
the batch:

* **online** (:func:`online_grads`): the traces are carried forward in time
  with ``lax.scan`` and the gradient accumulated step by step, as a network
  would; memory ``B N m`` per step (two buffers for MDGL).
* **offline** (:func:`offline_grads`): exchanging the sums over ``t`` and the
  trace's own sum over past steps gives

  .. math::

    g = \sum_s (D_s \odot c_s) \hat a_s^\top, \qquad
    c_s = \tilde L_s + \lambda_{s+1} \odot c_{s+1}, \qquad
    \tilde L_s = L_s + m_{s+1},

  a per-neuron (diagonal) backward filter of the learning signal followed by
  one contraction over batch and time: no ``N x m`` trace per example per step.
  This is BPTT's backward pass with the Jacobian replaced by its diagonal. The
  contraction skips the steps that carry no credit (:func:`credited_steps`,
  :func:`contract_steps`): with a loss on the last step only and no trace
  memory (``alpha = 1``), only the last one or two steps are contracted.
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules.base import input_grads, presynaptic, split_packed

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "contract_static_steps",
  "contract_steps",
  "credited_steps",
  "decays",
  "first_credited_step",
  "filter_backward",
  "offline_grads",
  "online_grads",
  "presynaptic",
  "shift_back",
  "split_packed",
  "static_credited_steps",
  "trace_decay",
]


def trace_decay(params: Params, spec: RNNSpec, traj: Trajectory, self_coupling: bool):
  r"""Per-neuron trace decay :math:`\lambda_t` ``[B, T, N]``, or ``None`` when it is zero.

  Args:
    params: network parameters.
    spec: the network.
    traj: the forward trajectory.
    self_coupling: keep :math:`D_{t,i} W_{rec,ii}` (the diagonal of :math:`J_t`);
      otherwise the leak :math:`1-\alpha` only.

  Returns:
    The decay, or ``None`` when it is zero by construction (``alpha = 1`` and no
    self-coupling term), so that callers can skip the time filter altogether.
  """
  if not decays(spec, self_coupling):
    return None
  decay = jnp.full_like(traj.dphi, 1.0 - spec.alpha)
  if self_coupling and not spec.no_autapse:
    diag = jnp.diagonal(effective_w_rec(params, spec))
    decay = decay + spec.alpha * traj.dphi * diag
  return decay


def decays(spec: RNNSpec, self_coupling: bool) -> bool:
  r"""Whether the trace decay :math:`\lambda_t` of :func:`trace_decay` can be non-zero (static)."""
  return spec.alpha != 1.0 or (self_coupling and not spec.no_autapse)


def first_credited_step(loss_steps: tuple[int, ...], decaying: bool, modulated: bool) -> int:
  """The earliest of :func:`static_credited_steps`: the first step the gradient reads."""
  steps = static_credited_steps(loss_steps, max(loss_steps) + 1, decaying, modulated)
  return int(np.argmax(steps))


def filter_backward(signal: jax.Array, decay: jax.Array | None) -> jax.Array:
  r"""Runs :math:`c_s = L_s + \lambda_{s+1} \odot c_{s+1}` backward in time, ``[B, T, N]``."""
  if decay is None:
    return signal
  # c_s needs lambda_{s+1}; shift the decay one step left, the last one is unused.
  nxt = jnp.concatenate([decay[:, 1:], jnp.zeros_like(decay[:, :1])], axis=1)

  def body(c_next, inputs):
    l_s, lam_next = inputs
    c = l_s + lam_next * c_next
    return c, c

  _, c = jax.lax.scan(
    body,
    jnp.zeros_like(signal[:, 0]),
    (jnp.swapaxes(signal, 0, 1), jnp.swapaxes(nxt, 0, 1)),
    reverse=True,
  )
  return jnp.swapaxes(c, 0, 1)


def shift_back(m: jax.Array) -> jax.Array:
  """``m_{t+1}`` at position ``t`` (zero after the last step)."""
  return jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)


def credited_steps(
  errors: jax.Array, decay: jax.Array | None, modulated: bool = False
) -> jax.Array:
  r"""Steps whose credit :math:`c_s` can be non-zero, ``[T]`` bool, from the errors alone.

  Step ``s`` carries credit if some example has a non-zero error at ``s`` (or at
  ``s + 1`` when modulated, since :math:`m_{s+1}` enters :math:`c_s`) or, when
  the trace decays rather than vanishes, at any later step. Decided from the
  errors' zero pattern (the loss mask) rather than from :math:`c` itself, so
  that forward-mode derivatives of the gradient are not cut off where a
  credit happens to be zero.
  """
  step = jnp.any(errors != 0, axis=(0, 2))
  if modulated:
    step = step | jnp.concatenate([step[1:], jnp.zeros((1,), bool)])
  if decay is not None:  # c_s collects every later signal: all steps up to the last one
    step = jnp.flip(jnp.cumsum(jnp.flip(step).astype(jnp.int32)) > 0)
  return step


def static_credited_steps(
  loss_steps: tuple[int, ...], n_steps: int, decays: bool, modulated: bool = False
) -> np.ndarray:
  r""":func:`credited_steps` from the task's static ``loss_steps``, ``[T]`` bool (NumPy).

  The same rule as :func:`credited_steps`, decided when the program is built:
  a task whose loss mask can be non-zero only at ``loss_steps`` (sequential
  MNIST: the last step) lets the contraction slice those steps out statically,
  so XLA never materializes the credits of the others.
  """
  step = np.zeros(n_steps, bool)
  step[np.asarray(loss_steps, int)] = True
  if modulated:
    step[:-1] |= step[1:]
  if decays:
    step = np.flip(np.cumsum(np.flip(step)) > 0)
  return step


def contract_static_steps(delta_fn, traj: Trajectory, spec: RNNSpec, active: np.ndarray) -> Params:
  r""":math:`\sum_{b,s} \delta_s \hat a_s^\top` over statically known ``active`` steps."""
  idx = np.flatnonzero(active).astype(np.int32)
  if idx.size == active.size:
    return input_grads(delta_fn(jnp.arange(active.size)), traj, spec)
  prev = jnp.take(traj.h_prev, idx, axis=1)
  x = jnp.take(traj.x, idx, axis=1).astype(traj.h.dtype)
  ones = jnp.ones(x.shape[:2] + (1,), traj.h.dtype)
  a_hat = jnp.concatenate([prev, x, ones], axis=-1)
  return split_packed(jnp.einsum("bkn,bkm->nm", delta_fn(jnp.asarray(idx)), a_hat), spec)


# The contraction over credited steps runs in at most this many chunks of
# ceil(T / MAX_CHUNKS) steps: one chunk when few steps carry credit (a loss on the
# last step only), large matmuls when all of them do.
MAX_CHUNKS = 8


def contract_steps(delta_fn, traj: Trajectory, spec: RNNSpec, active: jax.Array) -> Params:
  r""":math:`\sum_{b,s} \delta_s \hat a_s^\top` over the ``active`` steps only.

  A ``fori_loop`` with a data-dependent trip count (a ``while_loop``; under
  ``vmap`` it runs the largest count of the batch) over chunks of active steps,
  gathered in time order; padding entries are masked out. Works under ``jit``,
  ``vmap`` and forward-mode autodiff (not reverse mode).

  Args:
    delta_fn: ``idx [k] -> delta [B, k, N]``, the credits at those steps.
    traj: the forward trajectory.
    spec: the network.
    active: ``[T]`` bool, the steps to contract.

  Returns:
    Gradients of ``w_rec`` (masked), ``w_in`` and ``b``.
  """
  steps = active.shape[0]
  k = -(-steps // MAX_CHUNKS)
  padded = k * -(-steps // k)
  order = jnp.argsort(~active, stable=True).astype(jnp.int32)  # active steps first
  order = jnp.concatenate([order, jnp.zeros((padded - steps,), jnp.int32)])
  count = jnp.sum(active).astype(jnp.int32)
  n, m = spec.n_hidden, spec.n_hidden + spec.n_in + 1
  dtype = traj.h.dtype

  def body(i, g):
    idx = jax.lax.dynamic_slice(order, (i * k,), (k,))
    valid = ((i * k + jnp.arange(k)) < count).astype(dtype)
    delta = delta_fn(idx) * valid[None, :, None]
    prev = jnp.take(traj.h, jnp.maximum(idx - 1, 0), axis=1)
    prev = jnp.where((idx == 0)[None, :, None], traj.h0[:, None, :], prev)
    x = jnp.take(traj.x, idx, axis=1).astype(dtype)
    ones = jnp.ones(x.shape[:2] + (1,), dtype)
    a_hat = jnp.concatenate([prev, x, ones], axis=-1)
    return g + jnp.einsum("bkn,bkm->nm", delta, a_hat)

  g = jax.lax.fori_loop(0, (count + k - 1) // k, body, jnp.zeros((n, m), dtype))
  return split_packed(g, spec)


def offline_grads(
  spec: RNNSpec,
  traj: Trajectory,
  signal: jax.Array,
  decay: jax.Array | None,
  modulation: jax.Array | None = None,
  active: jax.Array | None = None,
) -> Params:
  r"""Trace gradient by the backward filter (fast, exact for fixed weights).

  .. math::

    c_s = L_s + m_{s+1} + \lambda_{s+1} \odot c_{s+1}, \qquad
    \nabla W = \sum_s (D_s \odot c_s) \hat a_s^\top.

  Args:
    spec: the network.
    traj: the forward trajectory.
    signal: learning signal :math:`L_t` ``[B, T, N]``.
    decay: :math:`\lambda_t` from :func:`trace_decay` (``None``: zero).
    modulation: optional :math:`m_t` ``[B, T, N]`` paired with :math:`E_{t-1}`.
    active: optional ``[T]`` bool, a superset of the steps with non-zero credit
      (:func:`credited_steps`): the contraction then skips the others (a loss
      on the last step only costs one step's contraction instead of ``T``);
      a NumPy array (:func:`static_credited_steps`) slices them out when the
      program is built. ``None``: one dense contraction over all steps.

  Returns:
    Gradients of ``w_rec`` (masked), ``w_in`` and ``b``.
  """
  if modulation is not None:
    signal = signal + shift_back(modulation)
  c = filter_backward(signal, decay)
  if active is None:
    return input_grads(spec.alpha * traj.dphi * c, traj, spec)

  def delta_fn(idx):
    return spec.alpha * jnp.take(traj.dphi, idx, axis=1) * jnp.take(c, idx, axis=1)

  if isinstance(active, np.ndarray):
    return contract_static_steps(delta_fn, traj, spec, active)
  return contract_steps(delta_fn, traj, spec, active)


def online_grads(
  spec: RNNSpec,
  traj: Trajectory,
  signal: jax.Array,
  decay: jax.Array | None,
  modulation: jax.Array | None = None,
) -> Params:
  r"""Trace gradient with the traces carried forward in time (what a network would do).

  .. math::

    E_t = \lambda_t \odot E_{t-1} + D_t \hat a_t^\top, \qquad
    g \mathrel{+}= L_t \odot E_t + m_t \odot E_{t-1}.

  Args:
    spec: the network.
    traj: the forward trajectory.
    signal: learning signal :math:`L_t` ``[B, T, N]``.
    decay: :math:`\lambda_t` from :func:`trace_decay` (``None``: zero).
    modulation: optional :math:`m_t` ``[B, T, N]`` paired with :math:`E_{t-1}`.

  Returns:
    Gradients of ``w_rec`` (masked), ``w_in`` and ``b``.
  """
  a_hat = presynaptic(traj)
  d = spec.alpha * traj.dphi
  if decay is None:
    decay = jnp.zeros_like(d)
  batch, _, m = a_hat.shape
  n = spec.n_hidden
  xs = (a_hat, d, decay, signal) + (() if modulation is None else (modulation,))
  t_major = tuple(jnp.swapaxes(v, 0, 1) for v in xs)

  def body(carry, inputs):
    e_prev, g = carry
    a_t, d_t, lam_t, l_t = inputs[:4]
    e = lam_t[:, :, None] * e_prev + d_t[:, :, None] * a_t[:, None, :]
    g = g + jnp.einsum("bn,bnm->nm", l_t, e)
    if modulation is not None:
      g = g + jnp.einsum("bn,bnm->nm", inputs[4], e_prev)
    return (e, g), None

  dtype = traj.h.dtype
  init = (jnp.zeros((batch, n, m), dtype), jnp.zeros((n, m), dtype))
  (_, g), _ = jax.lax.scan(body, init, t_major)
  return split_packed(g, spec)
