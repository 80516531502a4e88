"""The run config: shared defaults (``base_config``) and validation.

Config files in ``configs/`` start from :func:`base_config` and change what
their task needs. Validation runs before any data is loaded or anything is
compiled, and each error names the field and the allowed values.
"""

from __future__ import annotations

import ml_collections

from credit import rules, tasks
from credit.models.rnn import ACTIVATIONS
from credit.tasks.base import Task
from credit.training import optimizers

DTYPES = ("float32", "float64")


def base_config(task: str = "seq_mnist") -> ml_collections.ConfigDict:
  """Defaults of the reference protocol (BiolHessRNN, seq-MNIST)."""
  c = ml_collections.ConfigDict()
  c.task = task
  c.task_options = tasks.default_options(task)
  c.model = ml_collections.ConfigDict(
      dict(n_hidden=128, activation="relu", alpha=1.0, no_autapse=True, dale=False, frac_exc=0.8)
  )
  c.rule = "bptt"
  c.rule_options = rules.default_options()
  c.optimizer = ml_collections.ConfigDict(
      dict(name="sgd", learning_rate=1e-2, momentum=0.9, b1=0.9, b2=0.999, eps=1e-8,
           weight_decay=1e-4)
  )
  c.reg_l2 = 1e-2
  c.batch_size = 256
  c.num_steps = 10_000
  c.eval_every = 250
  c.num_seeds = 5
  c.seed = 0
  c.dtype = "float32"
  # Probes measured inside the compiled run (see credit.training.probes).
  c.curvature = ml_collections.ConfigDict(
      dict(
          every=0,  # steps between measurements (0: off); a multiple of eval_every
          params="w_rec",  # Hessian w.r.t. "w_rec" (as the reference) or "all"
          lanczos_steps=20,
          top_k=3,
          batch_size=256,  # validation examples the Hessian is measured on
          chunk_size=0,  # examples per HVP chunk (0: the whole batch at once)
          trace_probes=0,  # Hutchinson probes for Tr H (0: off)
          flatness_probes=0,  # Hutchinson probes for relative flatness of W_rec (0: off)
      )
  )
  c.alignment = ml_collections.ConfigDict(
      dict(
          every=0,  # steps between cosine(rule, BPTT) measurements (0: off)
          batch_size=256,  # validation examples
      )
  )
  return c


def parse_variants(arg: str | None, known: tuple[str, ...] = ("smoke",)) -> set[str]:
  """Parses the ``:a,b`` suffix of ``--config=file.py:a,b`` into a set of variant names."""
  variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
  unknown = variants - set(known)
  if unknown:
    raise ValueError(f"unknown config variant(s) {sorted(unknown)}; known: {list(known)}")
  return variants


def _positive_int(config, field):
  value = config[field]
  if not isinstance(value, int) or value < 1:
    raise ValueError(f"{field} must be a positive integer, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field whose value can be judged without loading data."""
  if config.task not in tasks.names():
    raise ValueError(f"task must be one of {tasks.names()}, got {config.task!r}")
  tasks.validate(config.task, config.task_options)
  if config.rule not in rules.names():
    raise ValueError(f"rule must be one of {rules.names()}, got {config.rule!r}")
  rules.validate(config.rule, config.rule_options)
  optimizers.validate(config.optimizer)
  for field in ("batch_size", "num_steps", "eval_every", "num_seeds"):
    _positive_int(config, field)
  if config.reg_l2 < 0:
    raise ValueError(f"reg_l2 must be >= 0, got {config.reg_l2}")
  if config.dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, got {config.dtype!r}")
  for block in ("curvature", "alignment"):
    every = config[block].every
    if not isinstance(every, int) or every < 0 or (every and every % config.eval_every):
      raise ValueError(
          f"{block}.every must be 0 (off) or a positive multiple of eval_every="
          f"{config.eval_every}, got {every!r}"
      )
  if config.curvature.params not in ("w_rec", "all"):
    raise ValueError(f"curvature.params must be one of ('w_rec', 'all'), got "
                     f"{config.curvature.params!r}")
  m = config.model
  if not isinstance(m.n_hidden, int) or m.n_hidden < 1:
    raise ValueError(f"model.n_hidden must be a positive integer, got {m.n_hidden!r}")
  if m.activation not in ACTIVATIONS:
    raise ValueError(f"model.activation must be one of {ACTIVATIONS}, got {m.activation!r}")
  if not 0 < m.alpha <= 1:
    raise ValueError(f"model.alpha must be in (0, 1], got {m.alpha}")
  if m.dale and not 0 < m.frac_exc < 1:
    raise ValueError(f"model.frac_exc must be in (0, 1) under Dale's law, got {m.frac_exc}")


def validate_against_task(config: ml_collections.ConfigDict, task: Task) -> None:
  """Checks that need the built task (split sizes)."""
  size = task.train_size
  if size is not None and config.batch_size > size:
    raise ValueError(
        f"batch_size={config.batch_size} is larger than the {size} training examples of "
        f"task {task.name!r}; use at most {size}"
    )
