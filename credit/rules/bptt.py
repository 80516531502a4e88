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

Training runs the same recursion through :func:`fused_loss_and_grads`, which
builds no batch-major :class:`Trajectory`: the states stay time-major as the
scans make them, the input enters the recurrent product (``[h_{t-1}, x_t]``
against the stacked ``[W_rec^T; W_in^T]``: on XLA's CPU backend the separate
``[B T, N_in] x [N_in, N]`` drive product, of inner dimension 28, ran at a
fifth of the recurrent product's rate), readout and errors exist at the static
loss steps only, no step after the last loss step runs, and the weight
gradients are two products over ``[T B, .]`` slices of the stored states with
no packed copy.
"""

from __future__ import annotations

from credit.models.rnn import (
  Params,
  RNNSpec,
  Trajectory,
  activation_fns,
  effective_w_rec,
  recurrent_mask,
)
from credit.rules.base import GradientRule, input_grads, learning_signal, no_state, readout_grads

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


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


def _derivative_gate(spec: RNNSpec, h: jax.Array, u: jax.Array | None):
  r"""``c -> D_t c`` from the stored state (``u`` is stored only with a leak)."""
  if u is not None:
    _, dphi = activation_fns(spec.activation)
    return lambda c: spec.alpha * dphi(u) * c
  if spec.activation == "relu":  # h = relu(u): u > 0 exactly where h > 0
    return lambda c: jnp.where(h > 0, c, 0.0)
  return lambda c: (1.0 - h * h) * c  # tanh' (u) = 1 - h^2 without a leak


def fused_loss_and_grads(
  params: Params,
  inputs: jax.Array,
  data_loss,
  *,
  spec: RNNSpec,
  loss_steps: tuple[int, ...] | None,
) -> tuple[jax.Array, Params]:
  r"""BPTT's data loss and exact gradient from ``inputs [B, T, N_in]``, ``h_0 = 0``.

  The recursion of :func:`backward_credit`, laid out for the CPU (see the module
  docstring). ``data_loss`` maps the readouts at ``loss_steps`` (``[B, S, N_out]``,
  all steps for ``None``) to the loss.
  """
  n_steps = inputs.shape[1]
  steps = tuple(range(n_steps)) if loss_steps is None else tuple(sorted(loss_steps))
  last = steps[-1] + 1  # steps after the last loss step carry no credit
  x = jnp.swapaxes(inputs[:, :last], 0, 1).astype(params["w_rec"].dtype)  # [T, B, N_in]
  batch, n = inputs.shape[0], spec.n_hidden
  w_rec = effective_w_rec(params, spec)
  w_cat = jnp.concatenate([w_rec.T, params["w_in"].T], axis=0)  # [N + N_in, N]
  phi, _ = activation_fns(spec.activation)
  leak = spec.alpha != 1.0

  def forward(h, x_t):
    u = jnp.concatenate([h, x_t], axis=1) @ w_cat + params["b"]
    h_new = (1.0 - spec.alpha) * h + spec.alpha * phi(u)
    return h_new, ((h_new, u) if leak else h_new)

  h0 = jnp.zeros((batch, n), w_rec.dtype)
  _, stored = jax.lax.scan(forward, h0, x)
  h, u = stored if leak else (stored, None)  # [T, B, N]

  idx = np.asarray(steps, np.int32)
  h_loss = h[idx]  # [S, B, N]
  loss, errors = jax.value_and_grad(lambda y: data_loss(jnp.swapaxes(y, 0, 1)))(
    h_loss @ params["w_out"].T + params["b_out"]
  )  # errors [S, B, N_out]
  q = errors @ params["w_out"]  # [S, B, N]

  def backward(carry, inputs_t):
    q_t, h_t, u_t = inputs_t
    c = carry if q_t is None else q_t + carry
    delta = _derivative_gate(spec, h_t, u_t)(c)
    return (1.0 - spec.alpha) * c + delta @ w_rec, delta

  if steps == (last - 1,):  # one loss step, the last: its error starts the recursion
    q_all, carry0 = None, q[0]
  else:
    q_all = jnp.zeros((last, batch, n), q.dtype).at[idx].set(q)
    carry0 = jnp.zeros((batch, n), q.dtype)
  _, delta = jax.lax.scan(backward, carry0, (q_all, h, u), reverse=True)  # [T, B, N]

  flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
  # h_{t-1} for t >= 1 is h[:-1]; the t = 0 term vanishes with h_0 = 0.
  g_rec = flat(delta[1:]).T @ flat(h[:-1]) * recurrent_mask(spec, w_rec.dtype)
  return loss, {
    "w_rec": g_rec,
    "w_in": flat(delta).T @ flat(x),
    "b": jnp.sum(delta, axis=(0, 1)),
    "w_out": jnp.einsum("sbo,sbn->on", errors, h_loss),
    "b_out": jnp.sum(errors, axis=(0, 1)),
  }


def make(spec: RNNSpec, options: ml_collections.ConfigDict | None = None) -> GradientRule:
  loss_steps = None if options is None else options.get("loss_steps")
  return GradientRule(
    name="bptt",
    init=no_state,
    grads=lambda p, s, tr, e, k: bptt_grads(p, s, tr, e, k, spec=spec),
    exact=True,
    fused=lambda p, x, loss: fused_loss_and_grads(p, x, loss, spec=spec, loss_steps=loss_steps),
    fused_steps=loss_steps,
  )
