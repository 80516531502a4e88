"""The learning-rule interface.

A rule builds an approximate gradient of the **data loss** from the states of
one forward pass. It never re-runs the network. Its inputs:

* ``params``: the network parameters (``W[post, pre]``);
* ``state``: the rule's own quantities, drawn once per seed by ``init`` (e.g. a
  random feedback matrix ``B``) and, for rules that learn them
  (``update_state``: KeRNL's kernels, DNI's synthetic gradient), updated after
  every training batch; an empty dict when it has none;
* ``traj``: the :class:`~credit.models.rnn.Trajectory` (``x``, ``h``, ``u``,
  ``phi'(u)``, ``y``);
* ``errors``: per-step output errors ``e_t = dL/dy_t [B, T, N_out]`` of the
  batch loss (so the batch mean and the loss mask are already in them);
* ``key``: for stochastic rules.

It returns a pytree with the structure of ``params``. Readout gradients are
exact for every rule (:func:`readout_grads`); the exact gradient of the L2 term
is added by the caller (:func:`credit.training.step.loss_and_grads`), never by
the rule, so that every rule shares one regularizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.models.rnn import Params, RNNSpec, Trajectory, recurrent_mask

import jax
import jax.numpy as jnp
import ml_collections

GradsFn = Callable[[Params, Any, Trajectory, jax.Array, jax.Array], Params]
# ``(params, inputs [B, T, N_in], data_loss) -> (loss, grads)``, ``data_loss`` mapping the
# readouts at the rule's loss steps ``[B, S, N_out]`` to the batch's data loss.
FusedFn = Callable[[Params, jax.Array, Callable[[jax.Array], jax.Array]], tuple[jax.Array, Params]]
StateUpdateFn = Callable[[Params, Any, Trajectory, jax.Array, jax.Array], Any]


class GradientRule(NamedTuple):
  """A learning rule, bound to a network spec and its options.

  Attributes:
    name: registry name.
    init: ``(key, params) -> state``, the rule's per-seed constants.
    grads: ``(params, state, traj, errors, key) -> grads`` of the data loss.
    exact: True when ``grads`` is the true gradient (BPTT, RTRL; TBPTT is False since
      T is unknown when it is built, although TBPTT(K>=T) is exact).
    autodiff: train through ``jax.value_and_grad`` of the loss instead of calling
      ``grads`` (only for exact rules whose ``grads`` is slower than reverse mode,
      e.g. RTRL's influence tensor). BPTT's trace form is faster than reverse mode
      through the forward scan (``benchmarks/train_step.py``), so BPTT trains through it.
    update_state: ``(params, state, traj, errors, key) -> new state``, the rule's
      learned quantities after one training batch, from the same forward pass
      and pre-update parameters as ``grads``
      (:func:`credit.training.objective.loss_grads_and_state`); ``None`` (default):
      the state stays what ``init`` made.
    first_step: the first step of the forward pass that ``grads`` (and
      ``update_state``) read, static: with a task's static loss steps, a rule
      whose credit cannot reach back further (the e-prop family without a
      decaying trace, MDGL, TBPTT's windows) is built for the trajectory of steps
      ``first_step ..`` (its static loss steps counted from there), and the
      caller runs the steps before keeping only the state
      (:func:`credit.models.rnn.forward` with ``start``): those states are never
      stored. 0 (default): the whole trajectory.
    fused: for a stateless exact rule, a program that runs its own forward pass and
      returns ``(data loss, grads)`` from the inputs (:data:`FusedFn`), used by
      training when no activity noise is injected
      (:func:`credit.training.objective.loss_and_grads`): it need not build a
      :class:`Trajectory` (BPTT's keeps its states time-major and reads out only at
      the static loss steps). ``grads`` stays the reference form.
    fused_steps: the loss steps ``fused`` reads out at (static; ``None``: every step).
  """

  name: str
  init: Callable[[jax.Array, Params], Any]
  grads: GradsFn
  exact: bool = False
  autodiff: bool = False
  update_state: StateUpdateFn | None = None
  first_step: int = 0
  fused: FusedFn | None = None
  fused_steps: tuple[int, ...] | None = None


def no_state(key: jax.Array, params: Params) -> dict:
  del key, params
  return {}


def readout_grads(traj: Trajectory, errors: jax.Array) -> Params:
  r"""Exact readout gradients :math:`\sum_{b,t} e_t h_t^\top` and :math:`\sum_{b,t} e_t`."""
  return {
    "w_out": jnp.einsum("bto,btn->on", errors, traj.h),
    "b_out": jnp.sum(errors, axis=(0, 1)),
  }


def learning_signal(feedback: jax.Array, errors: jax.Array) -> jax.Array:
  r"""Immediate learning signal :math:`q_t = F e_t` for feedback ``F [N, N_out]``."""
  return jnp.einsum("no,bto->btn", feedback, errors)


def presynaptic(traj: Trajectory) -> jax.Array:
  r"""The presynaptic vectors :math:`\hat a_t = [h_{t-1}; x_t; 1]`, ``[B, T, m]``."""
  ones = jnp.ones(traj.x.shape[:2] + (1,), traj.h.dtype)
  return jnp.concatenate([traj.h_prev, traj.x.astype(traj.h.dtype), ones], axis=-1)


def split_packed(g: jax.Array, spec: RNNSpec) -> Params:
  """Splits a packed ``[N, m]`` gradient of ``[W_rec | W_in | b]`` (``w_rec`` masked)."""
  n = spec.n_hidden
  return {
    "w_rec": g[:, :n] * recurrent_mask(spec, g.dtype),
    "w_in": g[:, n : n + spec.n_in],
    "b": g[:, -1],
  }


def input_grads(delta: jax.Array, traj: Trajectory, spec: RNNSpec) -> Params:
  r"""Gradients of ``W_rec``, ``W_in``, ``b`` from per-step credits at the pre-activation.

  Given :math:`\delta_t = \partial L / \partial u_t` (``[B, T, N]``, for any rule's
  notion of credit), the weight gradients are
  :math:`\sum_{b,t} \delta_t h_{t-1}^\top` (masked), :math:`\sum \delta_t x_t^\top`
  and :math:`\sum \delta_t`.
  """
  # One contraction against the packed [h_{t-1}; x_t; 1] is ~20% cheaper on CPU
  # than three separate ones (one pass over delta).
  return split_packed(jnp.einsum("btn,btm->nm", delta, presynaptic(traj)), spec)


RuleFactory = Callable[[RNNSpec, ml_collections.ConfigDict], GradientRule]
