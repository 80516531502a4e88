"""The run config: shared defaults (``base_config``) and validation.

Config files in ``configs/`` start from :func:`base_config` and change what
their task needs. ``config.model.kind`` picks the network: ``"rate"`` (the leaky
rate RNN, :mod:`credit.models.rnn`) or ``"lif"`` (LIF/ALIF spiking neurons,
:mod:`credit.models.lif`; ALIF through ``model.frac_adaptive``). Each kind has
its own model block (:func:`model_defaults`); a spiking config also has the
curvature fields ``spiking_definition`` and ``temperature``
(:mod:`credit.curvature.spiking`) and the task's spike-encoding options
(:mod:`credit.tasks.spike_encoding`): start it from
``base_config(task, model="lif")``.

Validation runs before any data is loaded or anything is compiled, and each
error names the field and the allowed values.
"""

from __future__ import annotations

import math

from credit import rules, tasks
from credit.curvature import tracking as curvature_tracking
from credit.curvature.spiking import DEFAULT_TEMPERATURE, SPIKING_DEFINITIONS
from credit.errors import ConfigError, UnknownFieldError
from credit.models import KINDS, lif, rnn
from credit.models.rnn import ACTIVATIONS
from credit.tasks import spike_encoding
from credit.tasks.base import Task
from credit.theory import tracking as theory_tracking
from credit.training import optimizers
from credit.training.seeds import SEED_LAYOUTS

import ml_collections

DTYPES = ("float32", "float64")


def model_defaults(kind: str = "rate") -> ml_collections.ConfigDict:
  """The model block of ``kind`` (``"rate"`` or ``"lif"``), with its defaults.

  ``"lif"`` fields are those of :class:`credit.models.lif.LIFSpec` (read by
  :func:`credit.models.lif.spec_from_config`); its ``alpha`` is the membrane decay
  :math:`e^{-dt/\tau_m}`, where the rate model's is the step :math:`dt/\tau`.
  """
  if kind not in KINDS:
    raise ConfigError(f"model.kind must be one of {KINDS}, got {kind!r}")
  if kind == "rate":
    return ml_collections.ConfigDict(
      dict(
        kind="rate",
        n_hidden=128,
        activation="relu",
        alpha=1.0,
        no_autapse=True,
        dale=False,
        frac_exc=0.8,
      )
    )
  spec = lif.LIFSpec(1, 128, 1)
  fields = {
    name: getattr(spec, name)
    for name in lif.LIFSpec._fields
    if name not in ("n_in", "n_out", "surrogate", "proxy_temperature")
  }
  surrogate = dict(
    surrogate=spec.surrogate.kind,
    surrogate_gamma=spec.surrogate.gamma,
    surrogate_width=spec.surrogate.width,
  )
  return ml_collections.ConfigDict(dict(kind="lif", **fields, **surrogate))


def base_config(task: str = "seq_mnist", model: str = "rate") -> ml_collections.ConfigDict:
  """Defaults of the reference protocol (BiolHessRNN, seq-MNIST), for a ``model`` network.

  ``model="lif"`` adds the spiking fields: the LIF model block, the curvature
  probe's ``spiking_definition`` and ``temperature``, and the task's spike
  encoding (``task_options.spike_encoding``, off by default).
  """
  c = ml_collections.ConfigDict()
  c.task = task
  c.task_options = tasks.default_options(task)
  c.model = model_defaults(model)
  c.rule = "bptt"
  c.rule_options = rules.default_options()
  c.optimizer = ml_collections.ConfigDict(
    dict(
      name="sgd",
      learning_rate=1e-2,
      momentum=0.9,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=1e-4,
      clip_norm=0.0,  # global-norm clipping of the update direction (0: off)
    )
  )
  c.reg_l2 = 1e-2
  c.batch_size = 256
  c.num_steps = 10_000
  c.eval_every = 250
  c.num_seeds = 5
  c.seed = 0
  # A seed whose training loss exceeds this (or turns non-finite) is marked diverged and
  # frozen: a blown-up run's metrics sit at chance and its lambda_max is astronomical, so
  # it must not enter the statistics as a trained network. inf: only non-finite losses.
  c.max_loss = 1e3
  c.dtype = "float32"
  # How a device runs its seeds: "map" (one after the other), "vmap" (vectorized), or
  # "auto" (map on CPU, vmap elsewhere; see credit.training.seeds).
  c.seed_layout = "auto"
  # Probes measured inside the compiled run (see credit.training.probes).
  c.curvature = ml_collections.ConfigDict(
    dict(
      every=0,  # steps between measurements (0: off); a multiple of eval_every
      params="w_rec",  # Hessian w.r.t. "w_rec" (as the reference) or "all"
      lanczos_steps=10,  # benchmarks/curvature.py: 1e-7 of power iteration at 27% of its HVPs
      # > 0: stop Lanczos once the top_k residual bounds are <= lanczos_tol * |lambda_max|
      # (lanczos_steps is then the most steps); 0: always lanczos_steps steps.
      lanczos_tol=0.0,
      top_k=3,
      batch_size=256,  # validation examples the Hessian is measured on
      chunk_size=0,  # examples per HVP chunk (0: the whole batch at once)
      trace_probes=0,  # Hutchinson probes for Tr H (0: off)
      flatness_probes=0,  # Hutchinson probes for relative flatness of W_rec (0: off)
    )
  )
  if model == "lif":
    c.task_options.update(spike_encoding.default_options())
    # Which curvature of a spiking loss the probe measures (credit.curvature.spiking):
    # "smoothed" (Hessian of the sigmoid proxy at `temperature`) or "surrogate" (the
    # Jacobian of the surrogate-gradient map: its symmetric part's lambda_max, and the
    # largest real eigenvalue as jacobian_max_real).
    c.curvature.spiking_definition = "smoothed"
    c.curvature.temperature = DEFAULT_TEMPERATURE
    # With "smoothed": also the surrogate Jacobian's surrogate_lambda_max (its symmetric
    # part) and jacobian_max_real, so one run reports both definitions.
    c.curvature.also_surrogate = False
  c.alignment = ml_collections.ConfigDict(
    dict(
      every=0,  # steps between cosine(rule, BPTT) measurements (0: off)
      batch_size=256,  # validation examples
    )
  )
  # Stability of the rule's update map (see credit.theory.tracking).
  c.theory = ml_collections.ConfigDict(
    dict(
      every=0,  # steps between measurements (0: off); a multiple of eval_every
      params="w_rec",  # parameters the Hessian and the rule's Jacobian act on, or "all"
      batch_size=256,  # validation examples (a fixed batch, as for curvature)
      lanczos_steps=20,  # Hessian Lanczos steps (top eigenvectors)
      lanczos_tol=0.0,  # as curvature.lanczos_tol
      top_k=1,  # alignment factor c along the top_k Hessian eigenvectors
      arnoldi_steps=20,  # Arnoldi steps on the rule's Jacobian J
      jvp="auto",  # "jvp" (forward mode), "fd" (central differences) or "auto"
    )
  )
  # Remedies (see credit.training.optimizers.schedule and credit.training.remedies);
  # the defaults leave training exactly as without them.
  c.remedies = ml_collections.ConfigDict(
    dict(
      lr_scale=1.0,  # multiplies optimizer.learning_rate (per-rule, e.g. 1/c)
      late_lr_factor=1.0,  # late-phase learning-rate multiplier (1: off)
      late_lr_start=0.5,  # late phase start: fraction of num_steps (< 1) or a step (>= 1)
      weight_noise_std=0.0,  # gradient taken at weights + N(0, std^2) (perturbed GD)
      activity_noise_std=0.0,  # N(0, std^2) added to pre-activations in training passes
    )
  )
  return c


def parse_variants(arg: str | None, known: tuple[str, ...] = ("smoke",)) -> set[str]:
  """Parses the ``:a,b`` suffix of ``--config=file.py:a,b`` into a set of variant names."""
  variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
  unknown = variants - set(known)
  if unknown:
    raise ConfigError(f"unknown config variant(s) {sorted(unknown)}; known: {list(known)}")
  return variants


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


# Fields whose value may be +inf (never NaN): max_loss=inf turns the loss bound off.
INFINITY_ALLOWED = frozenset({"max_loss"})


def known_fields(block: ml_collections.ConfigDict) -> list[str]:
  return sorted(block.keys())


def check_fields(
  config: ml_collections.ConfigDict | dict,
  reference: ml_collections.ConfigDict | dict,
  path: str = "",
  what: str = "the run config",
) -> None:
  """Checks every field of ``config`` against the defaults in ``reference``, recursively.

  A field must exist in ``reference`` and have its kind: a block, True/False, an
  integer, a finite number (``+inf`` only for :data:`INFINITY_ALLOWED`), a string, or
  a tuple of finite numbers. Fields of ``reference`` missing from ``config`` are left
  to the semantic checks (older configs lack some optional blocks).

  Raises:
    UnknownFieldError: a field ``reference`` does not have (lists the known ones).
    ConfigError: a value of the wrong kind, NaN or infinite.
  """
  for key in config.keys():
    field = f"{path}{key}"
    if key not in reference:
      block = f" of {path[:-1]}" if path else f" of {what}"
      raise UnknownFieldError(
        f"unknown config field {field!r}; the known fields{block} are {known_fields(reference)}"
      )
    value, default = config[key], reference[key]
    if isinstance(default, ml_collections.ConfigDict | dict):
      if not isinstance(value, ml_collections.ConfigDict | dict):
        raise ConfigError(f"{field} must be a block of fields, got {value!r}")
      check_fields(value, default, f"{field}.", what)
    elif isinstance(default, bool):
      if not isinstance(value, bool):
        raise ConfigError(f"{field} must be True or False, got {value!r}")
    elif _is_int(default):
      if not _is_int(value):
        raise ConfigError(f"{field} must be an integer, got {value!r}")
    elif isinstance(default, float):
      check_number(field, value, allow_inf=key in INFINITY_ALLOWED)
    elif isinstance(default, str):
      if not isinstance(value, str):
        raise ConfigError(f"{field} must be a string, got {value!r}")
    elif isinstance(default, tuple | list):
      if not isinstance(value, tuple | list):
        raise ConfigError(f"{field} must be a tuple of numbers, got {value!r}")
      for item in value:
        check_number(field, item, what="a tuple of finite numbers", shown=tuple(value))


def check_number(
  field: str, value, allow_inf: bool = False, what: str | None = None, shown=None
) -> None:
  """``value`` must be an int or float, not NaN, and finite unless ``allow_inf`` (+inf only)."""
  ok = _is_number(value) and not math.isnan(value)
  if ok and math.isinf(value):
    ok = allow_inf and value > 0
  if not ok:
    allowed = what or ("a number or inf" if allow_inf else "a finite number")
    raise ConfigError(f"{field} must be {allowed}, got {shown if shown is not None else value!r}")


def _positive_int(config, field, prefix=""):
  value = config[field]
  if not _is_int(value) or value < 1:
    raise ConfigError(f"{prefix}{field} must be a positive integer, got {value!r}")


def _nonnegative_int(config, field, prefix=""):
  value = config[field]
  if not _is_int(value) or value < 0:
    raise ConfigError(f"{prefix}{field} must be an integer >= 0 (0: off), got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field whose value can be judged without loading data.

  First the kind of every field (:func:`check_fields`: unknown fields, wrong types,
  NaN and infinities), then the allowed values. Any failure is a :class:`ConfigError`
  naming the field, the value and what is allowed.
  """
  try:
    _validate(config)
  except ConfigError:
    raise
  except ValueError as err:  # from the task, rule and optimizer modules' own checks
    raise ConfigError(str(err)) from None


def _validate(config: ml_collections.ConfigDict) -> None:
  if "task" not in config or config.task not in tasks.names():
    raise ConfigError(f"task must be one of {tasks.names()}, got {config.get('task')!r}")
  kind = model_kind(config)
  reference = base_config(config.task, kind)
  _check_model_block(config, reference, kind)
  check_fields(config, reference)
  tasks.validate(config.task, config.task_options)
  if kind == "rate" and config.rule not in rules.names():
    raise ConfigError(f"rule must be one of {rules.names()}, got {config.rule!r}")
  if kind == "lif" and config.rule not in rules.names_for("lif"):
    raise ConfigError(
      f"rule {config.rule!r} does not exist for spiking networks (model.kind='lif'); the "
      f"spiking rules are {rules.names_for('lif')}"
    )
  rules.validate(config.rule, config.rule_options, kind)
  optimizers.validate(config.optimizer)
  for field in ("batch_size", "num_steps", "eval_every", "num_seeds"):
    _positive_int(config, field)
  if not _is_int(config.seed) or not 0 <= config.seed < 2**32:
    raise ConfigError(f"seed must be an integer in [0, 2**32), got {config.seed!r}")
  if not config.reg_l2 >= 0:
    raise ConfigError(f"reg_l2 must be >= 0, got {config.reg_l2}")
  if not config.get("max_loss", math.inf) > 0:
    raise ConfigError(f"max_loss must be > 0 (inf: off), got {config.max_loss}")
  if config.get("dtype", "float32") not in DTYPES:
    raise ConfigError(f"dtype must be one of {DTYPES}, got {config.dtype!r}")
  layout = config.get("seed_layout", "auto")
  if layout not in SEED_LAYOUTS:
    raise ConfigError(f"seed_layout must be one of {SEED_LAYOUTS}, got {layout!r}")
  for block in ("curvature", "alignment", "theory"):
    if block not in config:  # configs written before the block existed: off
      continue
    every = config[block].every
    if not _is_int(every) or every < 0 or (every and every % config.eval_every):
      raise ConfigError(
        f"{block}.every must be 0 (off) or a positive multiple of eval_every="
        f"{config.eval_every}, got {every!r}"
      )
  if "curvature" in config:
    _validate_curvature(config.curvature)
  if "alignment" in config:
    _positive_int(config.alignment, "batch_size", "alignment.")
  if "theory" in config:
    _validate_theory(config.theory)
  if "remedies" in config:
    _validate_remedies(config.remedies, config.num_steps)
  m = config.model
  if not _is_int(m.n_hidden) or m.n_hidden < 1:
    raise ConfigError(f"model.n_hidden must be a positive integer, got {m.n_hidden!r}")
  if kind == "lif":
    _validate_spiking(config)
  else:
    if m.activation not in ACTIVATIONS:
      raise ConfigError(f"model.activation must be one of {ACTIVATIONS}, got {m.activation!r}")
    if not 0 < m.alpha <= 1:
      raise ConfigError(f"model.alpha must be in (0, 1], got {m.alpha}")
  if m.dale and not 0 < m.frac_exc < 1:
    raise ConfigError(f"model.frac_exc must be in (0, 1) under Dale's law, got {m.frac_exc}")
  _validate_against_shape(config, kind)


def network_spec(config: ml_collections.ConfigDict, shape: tasks.TaskShape):
  """The network of ``config.model`` for a task of ``shape`` (what ``make_trainer`` builds)."""
  m = config.model
  if model_kind(config) == "lif":
    return lif.spec_from_config(m, shape.n_in, shape.n_out)
  return rnn.RNNSpec(
    n_in=shape.n_in,
    n_hidden=m.n_hidden,
    n_out=shape.n_out,
    alpha=float(m.alpha),
    activation=m.activation,
    no_autapse=bool(m.no_autapse),
    dale=bool(m.dale),
    frac_exc=float(m.frac_exc),
  )


def _validate_against_shape(config: ml_collections.ConfigDict, kind: str) -> None:
  """What needs the task's channels and split sizes (known without its data): the
  batches against the splits, and the rule's and probes' limits on the network."""
  shape = tasks.shape(config.task, config.task_options)
  if shape.train_size is not None:
    for field, value in (
      ("batch_size", config.batch_size),
      ("task_options.train_eval_size", config.task_options.get("train_eval_size")),
    ):
      if value is not None and value > shape.train_size:
        raise ConfigError(
          f"{field}={value} is larger than the {shape.train_size} training examples of "
          f"task {config.task!r}; use at most {shape.train_size}"
        )
  for block in ("curvature", "alignment", "theory"):
    if block in config and config[block].every and config[block].batch_size > shape.val_size:
      raise ConfigError(
        f"{block}.batch_size={config[block].batch_size} is larger than the {shape.val_size} "
        f"validation examples of task {config.task!r} it is measured on; use at most "
        f"{shape.val_size}"
      )
  spec = network_spec(config, shape)
  rules.check_network(config.rule, spec, config.rule_options)
  if kind == "rate" and "curvature" in config and config.curvature.every:
    c = config.curvature
    subset = curvature_tracking.measured_subset(c.params)
    if c.lanczos_steps > curvature_tracking.free_dimension(spec, subset):
      raise ConfigError(
        f"curvature.lanczos_steps={c.lanczos_steps} is more than the Hessian's "
        f"{curvature_tracking.free_coordinates_note(spec, subset)}"
      )
  if kind == "rate" and "theory" in config and config.theory.every:
    theory_tracking.check_sizes(config, spec)


def model_kind(config: ml_collections.ConfigDict) -> str:
  """``config.model.kind`` (``"rate"`` for configs saved before the field existed)."""
  kind = config.model.get("kind", "rate") if "model" in config else "rate"
  if kind not in KINDS:
    raise ConfigError(f"model.kind must be one of {KINDS}, got {kind!r}")
  return kind


def _check_model_block(config, reference, kind: str) -> None:
  """A model block with another kind's fields gets an error that says so (other unknown
  fields, typos, get :func:`check_fields`' error)."""
  if not isinstance(config.get("model"), ml_collections.ConfigDict | dict):
    return  # left to check_fields
  others = set().union(*(model_defaults(k).keys() for k in KINDS if k != kind))
  alien = sorted((set(config.model.keys()) - set(reference.model.keys())) & others)
  if alien:
    raise UnknownFieldError(
      f"model.kind={kind!r} has no field(s) {alien}; its fields are "
      f"{known_fields(reference.model)} (start a {kind!r} config from "
      f"credit.training.config.base_config(task, model={kind!r}))"
    )


def _validate_spiking(config: ml_collections.ConfigDict) -> None:
  """The spiking model block, the spiking curvature fields; no theory probe."""
  lif.spec_from_config(config.model, 1, 1)  # ValueError naming the field
  c = config.curvature
  if c.spiking_definition not in SPIKING_DEFINITIONS:
    raise ConfigError(
      f"curvature.spiking_definition must be one of {SPIKING_DEFINITIONS}, got "
      f"{c.spiking_definition!r}"
    )
  if not c.temperature > 0:
    raise ConfigError(f"curvature.temperature must be > 0, got {c.temperature}")
  if c.get("also_surrogate", False) and c.spiking_definition != "smoothed":
    raise ConfigError(
      "curvature.also_surrogate needs curvature.spiking_definition='smoothed' (with "
      "'surrogate', lambda_max and jacobian_max_real already are the surrogate Jacobian's)"
    )
  if "theory" in config and config.theory.every > 0:
    raise ConfigError(
      "theory.every must be 0 for a spiking network (model.kind='lif'): the theory probe "
      "linearizes the rate model's rules"
    )


def _validate_curvature(c: ml_collections.ConfigDict) -> None:
  if c.params not in ("w_rec", "all"):
    raise ConfigError(f"curvature.params must be one of ('w_rec', 'all'), got {c.params!r}")
  for field in ("lanczos_steps", "top_k", "batch_size"):
    _positive_int(c, field, "curvature.")
  for field in ("chunk_size", "trace_probes", "flatness_probes"):
    _nonnegative_int(c, field, "curvature.")
  if c.top_k > c.lanczos_steps:
    raise ConfigError(
      f"curvature.top_k ({c.top_k}) must be at most curvature.lanczos_steps ({c.lanczos_steps})"
    )
  _lanczos_tol(c, "curvature.")


def _validate_theory(t: ml_collections.ConfigDict) -> None:
  if t.params not in ("w_rec", "all"):
    raise ConfigError(f"theory.params must be one of ('w_rec', 'all'), got {t.params!r}")
  for field in ("batch_size", "lanczos_steps", "top_k", "arnoldi_steps"):
    _positive_int(t, field, "theory.")
  if t.top_k > t.lanczos_steps:
    raise ConfigError(
      f"theory.top_k ({t.top_k}) must be at most theory.lanczos_steps ({t.lanczos_steps})"
    )
  if t.jvp not in ("auto", "jvp", "fd"):
    raise ConfigError(f"theory.jvp must be one of ('auto', 'jvp', 'fd'), got {t.jvp!r}")
  _lanczos_tol(t, "theory.")


def _lanczos_tol(block: ml_collections.ConfigDict, prefix: str) -> None:
  tol = block.get("lanczos_tol", 0.0)  # configs saved before the field: fixed steps
  if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
    raise ConfigError(f"{prefix}lanczos_tol must be a number in [0, 1), got {tol!r}")


def _validate_remedies(r: ml_collections.ConfigDict, num_steps: int) -> None:
  for field in ("lr_scale", "late_lr_factor"):
    if not r[field] > 0:
      raise ConfigError(f"remedies.{field} must be > 0, got {r[field]}")
  for field in ("weight_noise_std", "activity_noise_std"):
    if not r[field] >= 0:
      raise ConfigError(f"remedies.{field} must be >= 0 (0: off), got {r[field]}")
  start = optimizers.late_start_step(r.late_lr_start, num_steps)
  if r.late_lr_factor != 1.0 and not 0 < start <= num_steps:
    raise ConfigError(
      f"remedies.late_lr_start={r.late_lr_start} gives step {start}, outside (0, "
      f"num_steps={num_steps}]"
    )


def validate_against_task(config: ml_collections.ConfigDict, task: Task) -> None:
  """Checks that need the built task (split sizes)."""
  size = task.train_size
  if size is not None and config.batch_size > size:
    raise ConfigError(
      f"batch_size={config.batch_size} is larger than the {size} training examples of "
      f"task {task.name!r}; use at most {size}"
    )
