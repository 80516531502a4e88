"""Optimizers from optax, chosen by name in ``config.optimizer``."""

from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")


def validate(opt: ml_collections.ConfigDict) -> None:
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {opt.name!r}")
  if not opt.learning_rate > 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {opt.learning_rate}")
  if opt.name == "momentum" and not 0 <= opt.momentum < 1:
    raise ValueError(f"optimizer.momentum must be in [0, 1), got {opt.momentum}")


def schedule(config: ml_collections.ConfigDict) -> optax.Schedule | None:
  """The learning-rate schedule a run config asks for (``None``: constant)."""
  del config
  return None


def make_optimizer(
    opt: ml_collections.ConfigDict, learning_rate: optax.ScalarOrSchedule | None = None
) -> optax.GradientTransformation:
  """Builds the optimizer; ``learning_rate`` overrides ``opt.learning_rate`` (e.g. a schedule)."""
  validate(opt)
  lr = opt.learning_rate if learning_rate is None else learning_rate
  if opt.name == "sgd":
    return optax.sgd(lr)
  if opt.name == "momentum":
    return optax.sgd(lr, momentum=opt.momentum)
  if opt.name == "adam":
    return optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  if opt.name == "adamw":
    return optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
  return optax.rmsprop(lr, eps=opt.eps)
