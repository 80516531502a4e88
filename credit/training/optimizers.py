"""Optimizers from optax, chosen by name in ``config.optimizer``, and the learning-rate schedule.

The schedule implements the learning-rate remedies of ``config.remedies``
(:func:`schedule`); with the remedies off it is ``None`` and the optimizer
gets the plain float ``optimizer.learning_rate``, exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")


def validate(opt: ml_collections.ConfigDict) -> None:
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {opt.name!r}")
  # Written so that NaN fails every check (a comparison with NaN is False).
  if not 0 < opt.learning_rate < math.inf:
    raise ValueError(f"optimizer.learning_rate must be > 0 and finite, got {opt.learning_rate}")
  if opt.name == "momentum" and not 0 <= opt.momentum < 1:
    raise ValueError(f"optimizer.momentum must be in [0, 1), got {opt.momentum}")
  for field in ("b1", "b2"):
    if field in opt and not 0 <= opt[field] < 1:
      raise ValueError(f"optimizer.{field} must be in [0, 1), got {opt[field]}")
  if "eps" in opt and not 0 < opt.eps < math.inf:
    raise ValueError(f"optimizer.eps must be > 0 and finite, got {opt.eps}")
  if "clip_norm" in opt and not 0 <= opt.clip_norm < math.inf:
    raise ValueError(f"optimizer.clip_norm must be >= 0 and finite (0: off), got {opt.clip_norm}")
  if "weight_decay" in opt and not 0 <= opt.weight_decay < math.inf:
    raise ValueError(f"optimizer.weight_decay must be >= 0 and finite, got {opt.weight_decay}")


def late_start_step(start: float, num_steps: int) -> int:
  """The first update of the late learning-rate phase.

  Args:
    start: in ``[0, 1)``, a fraction of ``num_steps`` (rounded); ``>= 1``, a
      step count (an integer value).
    num_steps: the run's number of steps.

  Returns:
    The optax count from which the late learning rate applies.
  """
  if start < 0:
    raise ValueError(f"remedies.late_lr_start must be >= 0, got {start}")
  if start < 1:
    return int(round(start * num_steps))
  if float(start) != int(start):
    raise ValueError(
      f"remedies.late_lr_start >= 1 is a step count and must be an integer, got {start}"
    )
  return int(start)


def schedule(config: ml_collections.ConfigDict) -> optax.Schedule | None:
  r"""The learning-rate schedule a run config asks for (``None``: constant).

  With :math:`\eta_0` = ``optimizer.learning_rate``, :math:`s` =
  ``remedies.lr_scale``, :math:`f` = ``remedies.late_lr_factor`` and
  :math:`k_0` = :func:`late_start_step` of ``remedies.late_lr_start``, the
  update with optax count :math:`k` (the ``k``-th update, 0-based, which turns
  the parameters of step ``k`` into those of step ``k + 1``) uses

  .. math::

    \eta_k = \eta_0 \, s \, f^{[k \ge k_0]}.

  ``lr_scale`` is a per-run multiplier: a sweep gives each rule its own (e.g.
  :math:`1/c` with the alignment factor :math:`c` measured by the theory probe
  in an earlier run, the remedy of :mod:`credit.theory`), so that the step
  along the sharpest direction matches exact GD's. ``late_lr_factor`` is the
  late-phase increase (a sudden jump; :math:`f > 1`). Both default to 1, and
  then this returns ``None`` so the optimizer and its state are unchanged.

  Args:
    config: a run config (its ``optimizer``, ``num_steps`` and, if present,
      ``remedies`` block).

  Returns:
    ``count -> learning rate`` or ``None``.
  """
  r = config.get("remedies")
  if r is None or (r.lr_scale == 1.0 and r.late_lr_factor == 1.0):
    return None
  base = float(config.optimizer.learning_rate) * float(r.lr_scale)
  late = base * float(r.late_lr_factor)
  start = late_start_step(r.late_lr_start, config.num_steps)

  def lr(count: jax.Array) -> jax.Array:
    return jnp.where(count >= start, late, base)

  return lr


def learning_rate_at(config: ml_collections.ConfigDict) -> Callable[[jax.Array], jax.Array]:
  """``step -> eta``: the learning rate of the update made at ``step`` (schedule included)."""
  sched = schedule(config)
  if sched is not None:
    return sched
  base = float(config.optimizer.learning_rate)
  return lambda step: jnp.full((), base)


def make_optimizer(
  opt: ml_collections.ConfigDict, learning_rate: optax.ScalarOrSchedule | None = None
) -> optax.GradientTransformation:
  """Builds the optimizer; ``learning_rate`` overrides ``opt.learning_rate`` (e.g. a schedule).

  With ``opt.clip_norm`` = :math:`c > 0` the update direction is first clipped to global
  norm :math:`c`, :math:`g \\to g \\min(1, c / \\lVert g \\rVert)`: below :math:`c` the step is
  exactly the optimizer's (plain SGD's :math:`2/\\eta` bound applies there); above, it stops a
  single step off an RNN loss cliff from throwing a fitted network away.
  """
  validate(opt)
  lr = opt.learning_rate if learning_rate is None else learning_rate
  clip = float(opt.get("clip_norm", 0.0))
  if clip > 0:
    return optax.chain(optax.clip_by_global_norm(clip), _base_optimizer(opt, lr))
  return _base_optimizer(opt, lr)


def _base_optimizer(
  opt: ml_collections.ConfigDict, lr: optax.ScalarOrSchedule
) -> optax.GradientTransformation:
  if opt.name == "sgd":
    return optax.sgd(lr)
  if opt.name == "momentum":
    return optax.sgd(lr, momentum=opt.momentum)
  if opt.name == "adam":
    return optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  if opt.name == "adamw":
    return optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
  return optax.rmsprop(lr, eps=opt.eps)
