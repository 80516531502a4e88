"""Divergence found at an evaluation: a seed with a non-finite evaluation metric is diverged.

``train_step`` marks a seed diverged when its training loss turns non-finite or
exceeds ``max_loss`` (checked before each update). An update can still leave
finite parameters whose next forward pass overflows; the evaluation then sees
NaN or inf losses while the flag is still down. :func:`after_evaluation`
closes that gap: any seed with a non-finite loss, score or gap
(:func:`credit.analysis.stats.checked_for_divergence`) at an evaluation gets
``diverged`` set in the metrics and in its state, so it is frozen from then on
and every summary leaves it out.

Every driver calls it right after ``Trainer.evaluate``: ``make_train``,
:func:`credit.training.run.run_seeds` and the sweep runner, so they agree.
"""

from __future__ import annotations

from credit.analysis.stats import checked_for_divergence

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def mark_diverged(metrics: Metrics) -> Metrics:
  """``metrics`` with ``diverged |= any checked metric is non-finite`` (elementwise over seeds)."""
  diverged = metrics["diverged"]
  for name, value in metrics.items():
    if checked_for_divergence(name):
      diverged = diverged | ~jnp.isfinite(value)
  return {**metrics, "diverged": diverged}


_mark_diverged = jax.jit(mark_diverged)


def after_evaluation(state, metrics: Metrics):
  """``(state, metrics)`` with divergence found at this evaluation marked in both.

  Works on one seed or stacked (vmapped, sharded) seeds alike: every operation
  is elementwise over the seed axis.
  """
  metrics = _mark_diverged(metrics)
  return state._replace(diverged=metrics["diverged"]), metrics
