"""Tasks: a registry of task modules sharing the :class:`~credit.tasks.base.Task` interface.

Each task module exposes ``default_options() -> ConfigDict``,
``validate(options)`` and ``make(options, dtype) -> Task``. Options may also
carry a spike encoding of the inputs (``spike_encoding`` and its fields, see
:mod:`credit.tasks.spike_encoding`), applied here to the task a module builds.
"""

from __future__ import annotations

import importlib

from credit.tasks import spike_encoding
from credit.tasks.base import EVAL_SPLITS, Batch, Task, TaskShape

import jax.numpy as jnp
import ml_collections

_MODULES = {
  "delayed_match_to_sample": "credit.tasks.delayed_match_to_sample",
  "evidence_accumulation": "credit.tasks.evidence_accumulation",
  "pattern_generation": "credit.tasks.pattern_generation",
  "seq_mnist": "credit.tasks.seq_mnist",
}


def names() -> tuple[str, ...]:
  return tuple(sorted(_MODULES))


def module(name: str):
  if name not in _MODULES:
    raise ValueError(f"task must be one of {names()}, got {name!r}")
  return importlib.import_module(_MODULES[name])


def default_options(name: str) -> ml_collections.ConfigDict:
  return module(name).default_options()


def validate(name: str, options: ml_collections.ConfigDict) -> None:
  module(name).validate(options)
  spike_encoding.validate_options(options)


def shape(name: str, options: ml_collections.ConfigDict) -> TaskShape:
  """Channels and split sizes of the task ``make`` would build, without building it.

  Config validation uses it, so that a batch larger than the training split or a
  network a rule refuses is found before any data is loaded.
  """
  out = module(name).shape(options)
  encoding = spike_encoding.from_options(options)
  return out if encoding is None else out._replace(n_in=encoding.n_channels(out.n_in))


def make(name: str, options: ml_collections.ConfigDict | None = None, dtype=jnp.float32) -> Task:
  """Builds a task by name; ``options`` default to the task's ``default_options()``."""
  mod = module(name)
  options = options if options is not None else mod.default_options()
  task = mod.make(options, dtype)
  encoding = spike_encoding.from_options(options)
  return task if encoding is None else spike_encoding.encode_task(task, encoding)


__all__ = [
  "EVAL_SPLITS",
  "Batch",
  "Task",
  "TaskShape",
  "default_options",
  "make",
  "names",
  "shape",
  "validate",
]
