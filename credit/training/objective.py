"""The exact training objective and one rule's gradient of it.

``total_loss`` is what curvature is measured on (never a rule's approximate
gradient; for a spiking network its ``jax.grad`` is the surrogate gradient, and
the curvature probe picks a definition of its curvature, see
:mod:`credit.curvature.spiking`); ``loss_and_grads`` is what the training step descends, and
``loss_grads_and_state`` the same plus the rule's updated state (for rules that
learn auxiliary quantities, see :class:`~credit.rules.base.GradientRule`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from credit import losses
from credit.models import network, rnn
from credit.rules.base import GradientRule
from credit.tasks.base import Batch, Task, batch_at_steps

import jax


def make_total_loss(
  spec: rnn.RNNSpec, task: Task, reg_l2: float
) -> Callable[[rnn.Params, Batch], jax.Array]:
  """``(params, batch) -> data loss + L2``: the exact objective (of the model of ``spec``).

  For a rate network and a task with static loss steps, the readout is computed at those
  steps only (:func:`credit.models.rnn.outputs_at_steps`): the same loss, and curvature's
  forward-over-reverse products through it carry no readout or log-softmax of the other
  steps (seq-MNIST: 27 of 28).
  """
  net = network(spec)
  steps = task.loss_steps if isinstance(spec, rnn.RNNSpec) else None

  def total_loss(params: rnn.Params, batch: Batch) -> jax.Array:
    if steps is None:
      y = net.outputs(params, spec, batch.inputs)
    else:
      y = rnn.outputs_at_steps(params, spec, batch.inputs, steps)
      batch = batch_at_steps(batch, steps)
    return task.loss(y, batch) + losses.l2_penalty(params, reg_l2)

  return total_loss


def loss_and_grads(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  reg_l2: float,
  params: rnn.Params,
  rule_state,
  batch: Batch,
  key: jax.Array,
  noise: jax.Array | None = None,
) -> tuple[jax.Array, rnn.Params]:
  """Data loss and the rule's gradient of (data loss + L2) on one batch.

  Rules with ``autodiff=True`` (RTRL) go through ``jax.value_and_grad`` of the
  fused forward pass.
  ``noise`` (``[B, T, N]``, optional) is activity noise added to the
  pre-activations of the forward pass (the training-time remedy).
  Other rules run the forward pass once, take the per-step output errors
  ``dL/dy_t`` and build their gradient from the trajectory. The exact L2
  gradient is added for every rule.
  """
  if rule.autodiff:
    net = network(spec)

    # ``outputs`` keeps no [B, T, N] history to transpose: ~10% faster than ``forward``.
    def data_loss(p):
      if noise is None:
        return task.loss(net.outputs(p, spec, batch.inputs), batch)
      return task.loss(net.forward(p, spec, batch.inputs, noise=noise).y, batch)

    loss, grads = jax.value_and_grad(data_loss)(params)
  else:
    loss, traj, errors = forward_errors(rule, spec, task, params, batch, noise)
    grads = rule.grads(params, rule_state, traj, errors, key)
  return loss, _add_l2(grads, params, reg_l2)


# Folded into the rule's key for its state update, so that ``grads`` sees the same key
# with or without one.
_STATE_SALT = 0x57A7E


def loss_grads_and_state(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  reg_l2: float,
  params: rnn.Params,
  rule_state,
  batch: Batch,
  key: jax.Array,
  noise: jax.Array | None = None,
) -> tuple[jax.Array, rnn.Params, Any]:
  """:func:`loss_and_grads` and the rule's state after this batch.

  For a rule with ``update_state``, the state update sees the same trajectory
  and errors as its gradient (one forward pass) and the pre-update
  parameters; other rules return ``rule_state`` unchanged.

  Returns:
    ``(data loss, grads, new rule state)``.
  """
  if rule.update_state is None:
    loss, grads = loss_and_grads(rule, spec, task, reg_l2, params, rule_state, batch, key, noise)
    return loss, grads, rule_state
  loss, traj, errors = forward_errors(rule, spec, task, params, batch, noise)
  grads = rule.grads(params, rule_state, traj, errors, key)
  k_state = jax.random.fold_in(key, _STATE_SALT)
  new_state = rule.update_state(params, rule_state, traj, errors, k_state)
  return loss, _add_l2(grads, params, reg_l2), new_state


def forward_errors(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  params: rnn.Params,
  batch: Batch,
  noise: jax.Array | None = None,
) -> tuple[jax.Array, rnn.Trajectory, jax.Array]:
  """One forward pass: the data loss, the trajectory and the errors ``dL/dy_t`` that
  ``rule`` reads (the steps from ``rule.first_step`` on)."""
  start = rule.first_step
  if start == 0:
    traj = network(spec).forward(params, spec, batch.inputs, noise=noise)
  else:
    # Losses are masked means over steps and the mask is zero before the rule's first
    # step (it is built from the static loss steps), so the suffix gives the same loss.
    traj = rnn.forward(params, spec, batch.inputs, noise=noise, start=start)
    batch = batch_at_steps(batch, tuple(range(start, batch.inputs.shape[1])))
  loss, errors = jax.value_and_grad(lambda y: task.loss(y, batch))(traj.y)
  return loss, traj, errors


def _add_l2(grads: rnn.Params, params: rnn.Params, reg_l2: float) -> rnn.Params:
  l2 = losses.l2_gradient(params, reg_l2)
  return jax.tree.map(lambda g, r: g + r, grads, l2)
