"""Measurements taken at evaluations, as the config asks for them.

A probe is ``probe(params, rule_state, key, step, opt_state) -> {metric name: scalar}``
(``opt_state``, the optimizer state, defaults to ``None`` for probes that do not
need it); it is compiled into the training program and vmapped over seeds with it.
``step`` is not vmapped, so a probe that runs only every ``k`` steps uses
``lax.cond`` and pays nothing at the other evaluations (it reports NaN there).

Enabled by config blocks:

* ``curvature.every > 0``: :func:`credit.curvature.tracking.make_curvature_probe`
  (metrics ``lambda_max``, ``lambda_2`` .. ``lambda_k``, ``hessian_trace``,
  ``relative_flatness``; with ``adam``/``adamw``/``rmsprop`` the preconditioned
  sharpness ``lambda_max_precond``; for a spiking network, of the curvature
  definition ``curvature.spiking_definition`` picks, plus ``jacobian_max_real`` for
  ``"surrogate"``).
* ``alignment.every > 0``: :func:`credit.training.alignment_probe.make_alignment_probe`
  (metrics ``align_cos`` over all parameters, ``align_cos_recurrent`` over
  ``w_rec, w_in, b``, ``align_cos_<param>``, and the norm ratios
  ``align_norm_ratio``, ``align_norm_ratio_recurrent``: cosine between the rule's
  gradient and BPTT's, spiking BPTT's for a spiking network).
* ``theory.every > 0``: :func:`credit.theory.tracking.make_theory_probe`
  (metrics ``theory_lambda_max``, ``theory_c``, ``theory_eta``,
  ``predicted_lambda_bound``, ``theory_stability_ratio``, ``update_map_radius``,
  ``update_map_min_real``, ``rule_jac_max_real``, ``theory_align_cos``: the
  rule's update-map stability, see :mod:`credit.theory`).

When both the curvature and the theory probe are on over the same parameters,
batch size and Lanczos steps (:func:`credit.theory.tracking.shares_lanczos`),
they run as one probe that does the Lanczos run once at evaluations where both
are due (:func:`credit.theory.tracking.make_curvature_and_theory_probe`).
"""

from __future__ import annotations

from collections.abc import Callable

from credit.models.lif import LIFSpec
from credit.models.rnn import RNNSpec
from credit.rules.base import GradientRule
from credit.tasks.base import Task

import ml_collections


def make_probes(
  config: ml_collections.ConfigDict,
  spec: RNNSpec | LIFSpec,
  task: Task,
  rule: GradientRule,
  total_loss: Callable,
) -> tuple:
  """The probes enabled in ``config`` (none by default)."""
  probes = []
  from credit.theory.tracking import shares_lanczos

  shared = shares_lanczos(config)
  if shared:
    # One Lanczos run where both are due (credit.theory.tracking); same metrics.
    from credit.theory.tracking import make_curvature_and_theory_probe

    probes.append(make_curvature_and_theory_probe(config, spec, task, rule, total_loss))
  elif config.curvature.every > 0:
    from credit.curvature.tracking import make_curvature_probe

    probes.append(make_curvature_probe(config, spec, task, total_loss))
  if config.alignment.every > 0:
    from credit.training.alignment_probe import make_alignment_probe

    probes.append(make_alignment_probe(config, spec, task, rule))
  if "theory" in config and config.theory.every > 0 and not shared:
    from credit.theory.tracking import make_theory_probe

    probes.append(make_theory_probe(config, spec, task, rule, total_loss))
  return tuple(probes)
