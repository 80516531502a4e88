r"""Gradient alignment: the cosine between a rule's gradient and BPTT's.

For two gradient pytrees ``g`` (a rule) and ``r`` (the reference) and a group
``G`` of parameters,

.. math::

  \cos_G(g, r) = \frac{\sum_{k \in G} \langle g_k, r_k \rangle}
  {\sqrt{\sum_{k \in G} \|g_k\|^2} \sqrt{\sum_{k \in G} \|r_k\|^2}},

taken over the flattened leaves (0 when either norm is 0, as in vanilla-rtrl's
``compare_algorithms``). Groups: each parameter alone, ``recurrent``
(``w_rec``, ``w_in``, ``b``: where rules differ; readouts are exact for every
rule) and ``all`` (every parameter).
"""

from __future__ import annotations

from collections.abc import Mapping

from credit.models.rnn import Params, RNNSpec
from credit.rules import bptt
from credit.rules.base import GradientRule
from credit.tasks.base import Task, validation_batch

import jax
import jax.numpy as jnp
import ml_collections

RECURRENT = ("w_rec", "w_in", "b")


def _dot(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array], keys) -> jax.Array:
  return sum(jnp.vdot(a[k], b[k]) for k in keys)


def _cos(g, r, keys) -> jax.Array:
  gg, rr, gr = _dot(g, g, keys), _dot(r, r, keys), _dot(g, r, keys)
  denom = jnp.sqrt(gg) * jnp.sqrt(rr)
  return jnp.where(denom > 0, gr / jnp.where(denom > 0, denom, 1.0), 0.0)


def _norm_ratio(g, r, keys) -> jax.Array:
  gg, rr = _dot(g, g, keys), _dot(r, r, keys)
  return jnp.where(rr > 0, jnp.sqrt(gg / jnp.where(rr > 0, rr, 1.0)), jnp.nan)


def cosine_alignment(grads: Mapping[str, jax.Array], reference: Mapping[str, jax.Array]):
  """Cosine similarity per parameter group between two gradient pytrees (plain dicts).

  Args:
    grads: a rule's gradient, ``{name: array}``.
    reference: the reference gradient (BPTT), same structure.

  Returns:
    ``{name: cos}`` for each parameter, plus ``"recurrent"`` over the
    recurrent-side parameters present (``w_rec``, ``w_in``, ``b``) and ``"all"``
    over every parameter; scalars.
  """
  keys = sorted(reference)
  out = {k: _cos(grads, reference, (k,)) for k in keys}
  recurrent = [k for k in RECURRENT if k in reference]
  if recurrent:
    out["recurrent"] = _cos(grads, reference, recurrent)
  out["all"] = _cos(grads, reference, keys)
  return out


def probe_metric_names(param_names) -> tuple[str, ...]:
  """Names of the alignment probe's metrics."""
  names = ["align_cos", "align_cos_recurrent", "align_norm_ratio", "align_norm_ratio_recurrent"]
  return tuple(names + [f"align_cos_{k}" for k in sorted(param_names)])


def make_alignment_probe(
  config: ml_collections.ConfigDict, spec: RNNSpec, task: Task, rule: GradientRule
):
  r"""A probe ``(params, rule_state, key, step) -> metrics``: the rule's gradient vs BPTT's.

  Both gradients are the **descent directions training uses**: the gradient of
  the data loss (the rule's approximation, or BPTT's exact one) **plus the
  exact L2 gradient** (:func:`credit.training.objective.loss_and_grads`, the
  same call the training step makes). They are measured on a fixed batch: the
  first ``config.alignment.batch_size`` examples of ``task.eval_sets["val"]``.
  Exact rules (``exact=True``, e.g. ``rtrl``) train through the fused
  ``value_and_grad`` path, so their cosine is 1 by construction.

  Metrics: ``align_cos`` (all parameters), ``align_cos_recurrent`` (``w_rec``,
  ``w_in``, ``b``), ``align_cos_<param>`` for each parameter, and the norm
  ratios :math:`\|g\| / \|g_{bptt}\|` ``align_norm_ratio`` (all) and
  ``align_norm_ratio_recurrent``. Computed only when
  ``step % config.alignment.every == 0`` (``lax.cond``; ``step`` is an unbatched
  int32 scalar), NaN otherwise.
  """
  from credit.training.objective import loss_and_grads  # local: training imports rules

  every = int(config.alignment.every)
  if every < 1:
    raise ValueError(f"alignment.every must be a positive integer, got {every!r}")
  size = min(int(config.alignment.batch_size), task.eval_sets["val"].inputs.shape[0])
  batch = validation_batch(task, size, "alignment.batch_size")
  reference = bptt.make(spec)
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
      "align_norm_ratio": _norm_ratio(g, r, sorted(r)),
      "align_norm_ratio_recurrent": _norm_ratio(g, r, RECURRENT),
    }
    out.update({f"align_cos_{k}": v for k, v in cos.items()})
    return {k: jnp.asarray(v, dtype) for k, v in out.items()}

  def skip(params: Params, rule_state, key: jax.Array):
    del rule_state, key
    dtype = params["w_rec"].dtype
    return {k: jnp.full((), jnp.nan, dtype) for k in probe_metric_names(params)}

  def probe(params: Params, rule_state, key: jax.Array, step: jax.Array):
    return jax.lax.cond(step % every == 0, measure, skip, params, rule_state, key)

  return probe
