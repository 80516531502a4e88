"""The alignment probe: the cosine between a rule's update and BPTT's along training.

It lives in the training layer because both sides are the descent directions
training uses (:func:`credit.training.objective.loss_and_grads`); the cosine
itself is :func:`credit.rules.alignment.cosine_alignment`.
"""

from __future__ import annotations

from credit import rules
from credit.models.lif import LIFSpec
from credit.models.rnn import Params, RNNSpec
from credit.rules.alignment import RECURRENT, cosine_alignment, norm_ratio
from credit.rules.base import GradientRule
from credit.tasks.base import Task, validation_batch
from credit.training.objective import loss_and_grads

import jax
import jax.numpy as jnp
import ml_collections


def probe_metric_names(param_names) -> tuple[str, ...]:
  """Names of the alignment probe's metrics."""
  names = ["align_cos", "align_cos_recurrent", "align_norm_ratio", "align_norm_ratio_recurrent"]
  return tuple(names + [f"align_cos_{k}" for k in sorted(param_names)])


def make_alignment_probe(
  config: ml_collections.ConfigDict, spec: RNNSpec | LIFSpec, task: Task, rule: GradientRule
):
  r"""A probe ``(params, rule_state, key, step) -> metrics``: the rule's gradient vs BPTT's.

  Both gradients are the **descent directions training uses**: the gradient of
  the data loss (the rule's approximation, or BPTT's exact one) **plus the
  exact L2 gradient** (:func:`credit.training.objective.loss_and_grads`, the
  same call the training step makes). They are measured on a fixed batch: the
  first ``config.alignment.batch_size`` examples of ``task.eval_sets["val"]``.
  Exact rules (``exact=True``, e.g. ``rtrl``) train through the fused
  ``value_and_grad`` path, so their cosine is 1 by construction. For a spiking
  network the reference is spiking BPTT (the surrogate gradient,
  :func:`credit.rules.spiking.bptt_grads`), the rule ``rules.make`` builds for
  its spec.

  Metrics: ``align_cos`` (all parameters), ``align_cos_recurrent`` (``w_rec``,
  ``w_in``, ``b``), ``align_cos_<param>`` for each parameter, and the norm
  ratios :math:`\|g\| / \|g_{bptt}\|` ``align_norm_ratio`` (all) and
  ``align_norm_ratio_recurrent``. Computed only when
  ``step % config.alignment.every == 0`` (``lax.cond``; ``step`` is an unbatched
  int32 scalar), NaN otherwise.
  """
  every = int(config.alignment.every)
  if every < 1:
    raise ValueError(f"alignment.every must be a positive integer, got {every!r}")
  size = min(int(config.alignment.batch_size), task.eval_sets["val"].inputs.shape[0])
  batch = validation_batch(task, size, "alignment.batch_size")
  reference = rules.make("bptt", spec)
  reg_l2 = config.reg_l2

  def measure(params: Params, rule_state, key: jax.Array):
    # A barrier, as in evaluation: keeps XLA from constant-folding the fixed batch.
    b = jax.lax.optimization_barrier(batch)
    _, g = loss_and_grads(rule, spec, task, reg_l2, params, rule_state, b, key)
    _, r = loss_and_grads(reference, spec, task, reg_l2, params, {}, b, key)
    cos = cosine_alignment(g, r)
    dtype = params["w_rec"].dtype
    out = {
      "align_cos": cos.pop("all"),
      "align_cos_recurrent": cos.pop("recurrent"),
      "align_norm_ratio": norm_ratio(g, r, sorted(r)),
      "align_norm_ratio_recurrent": norm_ratio(g, r, RECURRENT),
    }
    out.update({f"align_cos_{k}": v for k, v in cos.items()})
    return {k: jnp.asarray(v, dtype) for k, v in out.items()}

  def skip(params: Params, rule_state, key: jax.Array):
    del rule_state, key
    dtype = params["w_rec"].dtype
    return {k: jnp.full((), jnp.nan, dtype) for k in probe_metric_names(params)}

  def probe(params: Params, rule_state, key: jax.Array, step: jax.Array, opt_state=None):
    del opt_state  # the alignment is the optimizer's input, not its step
    return jax.lax.cond(step % every == 0, measure, skip, params, rule_state, key)

  return probe
