"""The exact training objective and one rule's gradient of it.

``total_loss`` is what curvature is measured on (never a rule's approximate
gradient); ``loss_and_grads`` is what the training step descends.
"""

from __future__ import annotations

from collections.abc import Callable

from credit import losses
from credit.models import rnn
from credit.rules.base import GradientRule
from credit.tasks.base import Batch, Task

import jax


def make_total_loss(
  spec: rnn.RNNSpec, task: Task, reg_l2: float
) -> Callable[[rnn.Params, Batch], jax.Array]:
  """``(params, batch) -> data loss + L2``: the exact objective."""

  def total_loss(params: rnn.Params, batch: Batch) -> jax.Array:
    y = rnn.outputs(params, spec, batch.inputs)
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
    # ``outputs`` keeps no [B, T, N] history to transpose: ~10% faster than ``forward``.
    def data_loss(p):
      if noise is None:
        return task.loss(rnn.outputs(p, spec, batch.inputs), batch)
      return task.loss(rnn.forward(p, spec, batch.inputs, noise=noise).y, batch)

    loss, grads = jax.value_and_grad(data_loss)(params)
  else:
    traj = rnn.forward(params, spec, batch.inputs, noise=noise)
    loss, errors = jax.value_and_grad(lambda y: task.loss(y, batch))(traj.y)
    grads = rule.grads(params, rule_state, traj, errors, key)
  l2 = losses.l2_gradient(params, reg_l2)
  return loss, jax.tree.map(lambda g, r: g + r, grads, l2)
