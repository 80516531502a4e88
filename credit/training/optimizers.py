"""Optimizers from optax, chosen by name in ``config.optimizer``, and the learning-rate schedule.

The schedule implements the learning-rate remedies of ``config.remedies``
(:func:`schedule`); with the remedies off it is ``None`` and the optimizer
gets the plain float ``optimizer.learning_rate``, exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
# Optimizers whose step is preconditioned by a diagonal P (see :func:`preconditioner`).
ADAPTIVE = ("adam", "adamw", "rmsprop")


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


class StabilityThreshold(NamedTuple):
  r"""The sharpness above which an optimizer's quadratic-model step is unstable.

  Attributes:
    applies_to: ``"H"`` (the Hessian's sharpness :math:`\lambda_{max}(H)`),
      ``"P⁻¹H"`` (the preconditioned sharpness :math:`\lambda_{max}(P^{-1}H)`,
      the probe's ``lambda_max_precond``), or ``None`` when no threshold is known.
    formula: the threshold as text.
    value: the threshold at the given learning rate (NaN when unknown).
  """

  applies_to: str | None
  formula: str | None
  value: float


def stability_threshold(opt: Mapping, eta: float) -> StabilityThreshold:
  r"""The edge-of-stability threshold of ``opt`` (an ``optimizer`` config block) at rate ``eta``.

  On a quadratic with Hessian :math:`H` (frozen preconditioner :math:`P`):

  * ``sgd``: :math:`\theta \leftarrow \theta - \eta g` is stable iff
    :math:`\lambda_{max}(H) < 2/\eta`;
  * ``momentum`` (optax's heavy ball, :math:`m \leftarrow g + \beta m`,
    :math:`\theta \leftarrow \theta - \eta m`): iff
    :math:`\lambda_{max}(H) < (2 + 2\beta)/\eta`;
  * ``adam``, ``adamw``: the step :math:`\eta\, \hat m / (\sqrt{\hat v} + \epsilon)` is
    heavy-ball momentum with EMA weight :math:`1 - \beta_1` on the preconditioned
    problem, stable iff :math:`\lambda_{max}(P^{-1}H) < (2 + 2\beta_1)/((1 - \beta_1)\eta)`
    (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability";
    AdamW's decoupled decay is ignored);
  * ``rmsprop`` (optax's default, no momentum): :math:`\eta\, g / \sqrt{\nu + \epsilon}`
    is preconditioned GD, stable iff :math:`\lambda_{max}(P^{-1}H) < 2/\eta`.

  Args:
    opt: mapping with ``name`` and, as the optimizer needs, ``momentum`` or ``b1``
      (defaults 0.9, as the configs).
    eta: the learning rate.

  Returns:
    A :class:`StabilityThreshold`.
  """
  name = opt.get("name")
  if name == "sgd":
    return StabilityThreshold("H", "2/η", 2 / eta)
  if name == "momentum":
    b = float(opt.get("momentum", 0.9))
    return StabilityThreshold("H", "(2+2β)/η", (2 + 2 * b) / eta)
  if name in ("adam", "adamw"):
    b1 = float(opt.get("b1", 0.9))
    return StabilityThreshold("P⁻¹H", "(2+2β₁)/((1−β₁)η)", (2 + 2 * b1) / ((1 - b1) * eta))
  if name == "rmsprop":
    return StabilityThreshold("P⁻¹H", "2/η", 2 / eta)
  return StabilityThreshold(None, None, math.nan)


def preconditioner(opt: ml_collections.ConfigDict, opt_state: Any) -> tuple[Any, jax.Array] | None:
  r"""The diagonal preconditioner :math:`P` of an adaptive optimizer's state (``None`` otherwise).

  The step :math:`\theta \leftarrow \theta - \eta P^{-1} u` has

  * ``adam``, ``adamw``: :math:`P = \sqrt{\hat v} + \epsilon` with the bias-corrected
    second moment :math:`\hat v = \nu / (1 - \beta_2^{t})`, :math:`t` the state's
    count of updates made;
  * ``rmsprop`` (optax's default: ``eps`` inside the root, no bias correction):
    :math:`P = \sqrt{\nu + \epsilon}`.

  This is the preconditioner of the last update made (the next one also folds in
  its own gradient). Before Adam's first update :math:`\hat v` is undefined
  (:math:`0/0`): ``valid`` is False there.

  Args:
    opt: the ``optimizer`` config block the state was made by (:func:`make_optimizer`).
    opt_state: its optax state (one seed's, or vmapped).

  Returns:
    ``(P, valid)``, ``P`` a pytree like the parameters, or ``None`` for ``sgd``
    and ``momentum``.
  """
  if opt.name not in ADAPTIVE:
    return None
  # make_optimizer's chains start with the moment transform: scale_by_adam / scale_by_rms.
  inner = opt_state[0]
  if opt.name == "rmsprop":
    if not isinstance(inner, optax.ScaleByRmsState):
      raise TypeError(f"expected optax.ScaleByRmsState first in the rmsprop state, got {inner!r}")
    return jax.tree.map(lambda n: jnp.sqrt(n + opt.eps), inner.nu), jnp.ones((), bool)
  if not isinstance(inner, optax.ScaleByAdamState):
    raise TypeError(f"expected optax.ScaleByAdamState first in the {opt.name} state, got {inner!r}")
  count = inner.count
  valid = count > 0
  t = jnp.maximum(count, 1)
  p = jax.tree.map(
    lambda n: jnp.sqrt(n / (1 - jnp.asarray(opt.b2, n.dtype) ** t.astype(n.dtype))) + opt.eps,
    inner.nu,
  )
  return p, valid
