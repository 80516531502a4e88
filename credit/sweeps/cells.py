"""Expanding a sweep config into cells: one run config per task x rule x learning rate.

A sweep config (``configs/sweeps/*.py``) holds:

* ``name``: a label for logs;
* ``tasks``: ``{task name: run config}``, each from ``configs/<task>.py``
  (the key must equal the run config's ``task``);
* ``rules``: a tuple of rule names; ``learning_rates``: a tuple of floats, or
  ``()`` for each task's own ``optimizer.learning_rate`` (the committed sweeps:
  an override of a task's rate then takes effect instead of being replaced);
* ``rule_overrides``: ``{rule: partial run config}`` applied to that rule's
  cells of every task (e.g. ``num_steps`` and ``eval_every``); overrides of a
  rule the sweep does not run are ignored (a name that is no rule is refused);
* ``task_rule_overrides``: ``{task: {rule: partial run config}}`` applied
  after ``rule_overrides``, for what differs per task and rule;
* ``checkpoint_every``: steps between checkpoints (0: only at the end);
* ``fit_criteria`` (optional): ``{task: {"metric": "train_acc", "at_least":
  0.95}}``, the level of fit at which a run counts as trained
  (:mod:`credit.analysis.fit`); reports compare rules there and leave out the
  runs that never reach it.

A cell's run config is built in this order: the task's base config, then
``rule``, then the overrides, then ``optimizer.learning_rate``: a swept
value always wins. Cell ids (``<task>-<rule>-lr<lr>``) depend on these three
coordinates only, so they stay the same from run to run and name the cell's
folder in the sweep's workdir.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from credit.errors import ConfigError, UnknownFieldError

import ml_collections

SWEEP_FIELDS = (
  "name",
  "tasks",
  "rules",
  "learning_rates",
  "rule_overrides",
  "task_rule_overrides",
  "checkpoint_every",
)
OPTIONAL_SWEEP_FIELDS = ("fit_criteria", "task_rule_learning_rates")
FIT_CRITERION_FIELDS = ("metric", "at_least")


class Cell(NamedTuple):
  """One point of the sweep grid and its resolved run config."""

  id: str
  task: str
  rule: str
  learning_rate: float
  config: ml_collections.ConfigDict


def cell_id(task: str, rule: str, learning_rate: float) -> str:
  """``<task>-<rule>-lr<lr>`` (``%g`` format); task and rule names never contain ``-``."""
  return f"{task}-{rule}-lr{float(learning_rate):g}"


def merge(config: ml_collections.ConfigDict, overrides, path: str = "") -> None:
  """Writes ``overrides`` (nested mappings) into ``config`` in place, field by field.

  Nested blocks are merged, not replaced, so ``dict(curvature=dict(every=400))``
  changes one field of the ``curvature`` block.

  Raises:
    UnknownFieldError: an override names a field the config does not have (a
      typo would otherwise be silently ignored); also a ``KeyError``.
  """
  for key, value in overrides.items():
    where = f"{path}{key}"
    if key not in config:
      raise UnknownFieldError(
        f"override {where!r} is not a field of the run config; the known fields "
        f"{f'of {path[:-1]}' if path else 'at the top level'} are {sorted(config.keys())}"
      )
    if isinstance(value, dict | ml_collections.ConfigDict):
      if not isinstance(config[key], ml_collections.ConfigDict):
        raise UnknownFieldError(f"override {where!r} is a block, but the run config's field is not")
      merge(config[key], value, f"{where}.")
    else:
      config[key] = value


def validate_sweep(sweep: ml_collections.ConfigDict) -> None:
  """Checks the sweep's own fields (cell configs are validated by :func:`expand`).

  Raises:
    ConfigError: a missing, unknown or invalid field, named with its value and
      what is allowed.
  """
  missing = [f for f in SWEEP_FIELDS if f not in sweep]
  if missing:
    raise ConfigError(f"sweep config lacks field(s) {missing}; a sweep config has {SWEEP_FIELDS}")
  known = SWEEP_FIELDS + OPTIONAL_SWEEP_FIELDS
  unknown = sorted(set(sweep.keys()) - set(known))
  if unknown:
    raise UnknownFieldError(
      f"unknown sweep config field(s) {unknown}; the known fields are {sorted(known)}"
    )
  if not isinstance(sweep.name, str):
    raise ConfigError(f"sweep.name must be a string, got {sweep.name!r}")
  if not sweep.tasks:
    raise ConfigError("sweep.tasks is empty; it maps task names to run configs")
  for name, config in sweep.tasks.items():
    if not isinstance(config, ml_collections.ConfigDict) or "task" not in config:
      raise ConfigError(f"sweep.tasks.{name} must be a run config (configs/<task>.py)")
    if config.task != name:
      raise ConfigError(
        f"sweep.tasks.{name} is a config of task {config.task!r}; the key must "
        "equal the run config's task"
      )
  for field in ("rules", "learning_rates"):
    values = sweep[field]
    if isinstance(values, str) or not isinstance(values, tuple | list):
      raise ConfigError(f"sweep.{field} must be a tuple, got {values!r}")
    values = tuple(values)
    if not values and field == "rules":
      raise ConfigError(f"sweep.{field} is empty")
    if len(set(values)) != len(values):
      raise ConfigError(f"sweep.{field} has duplicates: {values}")
  _check_rates("sweep.learning_rates", sweep.learning_rates)  # (): each task's own rate
  known_rules = all_rule_names()
  for rule in sweep.rules:
    if rule not in known_rules:
      raise ConfigError(
        f"sweep.rules: unknown rule {rule!r} in {tuple(sweep.rules)}; the rules are "
        f"{sorted(known_rules)}"
      )
  for task, per_rule in (sweep.get("task_rule_learning_rates") or {}).items():
    where = f"sweep.task_rule_learning_rates.{task}"
    if task not in sweep.tasks:
      raise ConfigError(f"{where}: task {task!r} is not in sweep.tasks {sorted(sweep.tasks)}")
    unknown = set(per_rule) - set(sweep.rules)
    if unknown:
      raise ConfigError(f"{where} names rules not in sweep.rules: {sorted(unknown)}")
    for rule, rates in per_rule.items():
      if isinstance(rates, str) or not isinstance(rates, tuple | list) or not rates:
        raise ConfigError(f"{where}.{rule} must be a non-empty tuple of rates, got {rates!r}")
      if len(set(rates)) != len(rates):
        raise ConfigError(f"{where}.{rule} has duplicates: {tuple(rates)}")
      _check_rates(f"{where}.{rule}", rates)
  # Overrides of a registered rule that this sweep does not run are ignored: a user who
  # drops rules from sweep.rules (--config.rules='("bptt",)') need not drop their
  # overrides too. A name that is no rule at all is a typo, and is refused.
  _check_override_rules(sweep.rule_overrides, "sweep.rule_overrides", known_rules)
  for task, per_rule in sweep.task_rule_overrides.items():
    if task not in sweep.tasks:
      raise ConfigError(
        f"sweep.task_rule_overrides names task {task!r}, not in sweep.tasks {sorted(sweep.tasks)}"
      )
    _check_override_rules(per_rule, f"sweep.task_rule_overrides.{task}", known_rules)
  every = sweep.checkpoint_every
  if not isinstance(every, int) or isinstance(every, bool) or every < 0:
    raise ConfigError(f"sweep.checkpoint_every must be an integer >= 0, got {every!r}")
  validate_fit_criteria(sweep.get("fit_criteria") or {}, tuple(sweep.tasks))


def all_rule_names() -> frozenset[str]:
  """Every registered rule, rate or spiking (a cell's model kind decides which apply)."""
  from credit import rules

  return frozenset(rules.names_for("rate")) | frozenset(rules.names_for("lif"))


def _check_override_rules(overrides, where: str, known_rules: frozenset[str]) -> None:
  unknown = sorted(set(overrides) - known_rules)
  if unknown:
    raise ConfigError(
      f"{where} names unknown rule(s) {unknown}; the rules are {sorted(known_rules)}"
    )


def _check_rates(where: str, rates) -> None:
  for lr in rates:
    if (
      not isinstance(lr, int | float)
      or isinstance(lr, bool)
      or not 0 < lr < math.inf  # False for NaN too
    ):
      raise ConfigError(f"{where} must be finite numbers > 0, got {lr!r} in {tuple(rates)}")


def learning_rates(sweep: ml_collections.ConfigDict, task: str, rule: str) -> tuple[float, ...]:
  """The rates of ``task`` x ``rule``: ``task_rule_learning_rates`` if it names them, else
  :func:`task_learning_rates`."""
  per_rule = (sweep.get("task_rule_learning_rates") or {}).get(task) or {}
  return tuple(per_rule[rule]) if rule in per_rule else task_learning_rates(sweep, task)


def task_learning_rates(sweep: ml_collections.ConfigDict, task: str) -> tuple[float, ...]:
  """The learning rates of ``task``'s cells: ``sweep.learning_rates``, or, when that is
  empty, the task's own ``optimizer.learning_rate``.

  An empty tuple is what the committed sweeps hold, so that
  ``--config.tasks.<task>.optimizer.learning_rate=...`` takes effect (with a
  non-empty ``learning_rates`` the swept values replace every task's rate).
  """
  rates = tuple(sweep.learning_rates)
  return rates if rates else (float(sweep.tasks[task].optimizer.learning_rate),)


def validate_fit_criteria(criteria, tasks: tuple[str, ...]) -> None:
  """Checks ``sweep.fit_criteria``: per task a score metric (``*_acc``) and a finite level.

  Raises:
    ConfigError: a task not in the sweep, a missing or unknown field, a metric
      that is not a score, or a level that is not a finite number.
  """
  for task, spec in criteria.items():
    where = f"sweep.fit_criteria.{task}"
    if task not in tasks:
      raise ConfigError(f"{where}: task {task!r} is not in sweep.tasks {sorted(tasks)}")
    if not isinstance(spec, dict | ml_collections.ConfigDict):
      raise ConfigError(f"{where} must be a block {{metric, at_least}}, got {spec!r}")
    fields = set(spec.keys())
    if fields != set(FIT_CRITERION_FIELDS):
      raise UnknownFieldError(
        f"{where} has fields {sorted(fields)}; a fit criterion has exactly "
        f"{list(FIT_CRITERION_FIELDS)}"
      )
    metric, level = spec["metric"], spec["at_least"]
    if not isinstance(metric, str) or not metric.endswith("_acc") or metric.startswith("gap"):
      raise ConfigError(
        f"{where}.metric must name a score (train_acc, val_acc, ...: accuracy or R²), "
        f"got {metric!r}"
      )
    if isinstance(level, bool) or not isinstance(level, int | float) or not math.isfinite(level):
      raise ConfigError(f"{where}.at_least must be a finite number, got {level!r}")


def cell_config(
  sweep: ml_collections.ConfigDict, task: str, rule: str, learning_rate: float
) -> ml_collections.ConfigDict:
  """The resolved (unlocked) run config of one cell."""
  config = ml_collections.ConfigDict(sweep.tasks[task].to_dict())
  config.rule = rule
  if rule in sweep.rule_overrides:
    merge(config, sweep.rule_overrides[rule])
  if task in sweep.task_rule_overrides and rule in sweep.task_rule_overrides[task]:
    merge(config, sweep.task_rule_overrides[task][rule])
  config.optimizer.learning_rate = float(learning_rate)
  return config


def expand(sweep: ml_collections.ConfigDict, validate: bool = True) -> tuple[Cell, ...]:
  """All cells of a sweep: tasks (sorted) x rules x learning rates (in config order).

  Args:
    sweep: a sweep config.
    validate: also validate each cell's run config
      (:func:`credit.training.config.validate`, which needs every rule and
      task to be registered); off for inspecting configs of rules that have
      not landed yet.

  Returns:
    The cells, with unique ids.
  """
  validate_sweep(sweep)
  cells = []
  for task in sorted(sweep.tasks):
    for rule in sweep.rules:
      for lr in learning_rates(sweep, task, rule):
        config = cell_config(sweep, task, rule, lr)
        if validate:
          from credit.training import config as config_lib

          try:
            config_lib.validate(config)
          except UnknownFieldError as err:
            raise UnknownFieldError(f"cell {cell_id(task, rule, lr)}: {err}") from None
          except ConfigError as err:  # say which cell: the field may come from an override
            raise ConfigError(f"cell {cell_id(task, rule, lr)}: {err}") from None
        cells.append(Cell(cell_id(task, rule, lr), task, rule, float(lr), config))
  ids = [c.id for c in cells]
  if len(set(ids)) != len(ids):
    raise ConfigError(f"learning rates that print alike (%g) give duplicate cell ids: {ids}")
  return tuple(cells)
