"""The sweeps of a reproduction: the base sweep of each task and its remedy variants.

A reproduction config (``configs/reproduce/*.py``) holds:

* ``name``: a label;
* ``tasks``: ``{task: sweep config}`` (:mod:`credit.sweeps.cells`), one sweep per
  task (its rules, seeds, steps and probes);
* ``remedies``: ``{variant: partial run config}``, e.g.
  ``dict(remedies=dict(lr_scale=2.0))``; each variant is run as a sweep of its
  own (the sweep grid has no remedy axis), into ``<workdir>/<task>/<variant>``;
* ``remedy_rules``: ``{task: rules}`` that get the remedy variants (a task not
  listed: every rule of its sweep but BPTT);
* ``claims`` (optional): the verdict protocol of its report
  (:mod:`credit.reproduction.protocol`), written to ``<workdir>/claims.json`` before
  the first sweep runs;
* ``remedy_overrides`` (optional): ``{task: partial run config}`` merged into
  every remedy cell of that task after the variant's own overrides, e.g.
  ``dict(num_seeds=10, theory=dict(every=0))`` for fewer seeds and no theory
  probe in the remedy sweeps than in the base sweep;
* ``lr_selection_dir`` (optional): a folder of learning-rate selections,
  ``<dir>/<task>/selection.json`` (:mod:`credit.analysis.lr_selection`); each task
  with one runs its base sweep and remedies at the chosen rate per rule
  (:func:`with_lr_selection`), a task or rule without one at its sweep's rate.

:func:`with_theory` turns the theory probe on wherever the curvature probe
runs, per-rule overrides included, so that the predicted bound is measured at
the same steps as :math:`\\lambda_{max}`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from credit.analysis import lr_selection
from credit.errors import ConfigError, UnknownFieldError
from credit.reproduction import protocol as protocol_lib

import ml_collections

BASE = "base"
REFERENCE_RULE = "bptt"


def _every(block: Mapping | None) -> int:
  if not block:
    return 0
  return int(block.get("every", 0) or 0)


def with_theory(
  sweep: ml_collections.ConfigDict, every_evals: int = 1
) -> ml_collections.ConfigDict:
  """A copy of ``sweep`` whose run configs measure the theory probe with the curvature probe.

  Each task config gets ``theory.every = every_evals * curvature.every`` (or
  ``eval_every`` when curvature is off) and the curvature probe's batch size
  and Lanczos steps and tolerance (Arnoldi steps = Lanczos steps); every rule override that
  changes ``curvature.every`` or ``eval_every`` gets the matching
  ``theory.every``. ``every_evals > 1`` thins the theory probe out (it costs
  about as much as the curvature probe again); choose it so that it divides
  the number of evaluations, or the last one is not measured.
  """
  if every_evals < 1:
    raise ValueError(f"every_evals must be a positive integer, got {every_evals}")
  out = ml_collections.ConfigDict(sweep.to_dict())
  for config in out.tasks.values():
    t, c = config.theory, config.curvature
    t.every = every_evals * (c.every or config.eval_every)
    t.params = c.params
    t.batch_size = c.batch_size
    t.lanczos_steps = c.lanczos_steps
    t.lanczos_tol = c.get("lanczos_tol", 0.0)
    t.arnoldi_steps = c.lanczos_steps

  def fix(override: ml_collections.ConfigDict) -> None:
    every = _every(override.get("curvature")) or int(override.get("eval_every", 0) or 0)
    if every:
      if "theory" not in override:
        override.theory = ml_collections.ConfigDict()
      override.theory.every = every_evals * every

  for override in out.rule_overrides.values():
    fix(override)
  for per_rule in out.task_rule_overrides.values():
    for override in per_rule.values():
      fix(override)
  return out


def _deep_merge(a: Mapping, b: Mapping) -> dict:
  out = dict(a)
  for k, v in b.items():
    out[k] = (
      _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    )
  return out


def remedy_rules(repro: ml_collections.ConfigDict, task: str) -> tuple[str, ...]:
  """The rules of ``task`` that get the remedy variants."""
  rules = tuple(repro.tasks[task].rules)
  listed = repro.get("remedy_rules", {}) or {}
  if task in listed:
    chosen = tuple(listed[task])
    unknown = sorted(set(chosen) - set(rules))
    if unknown:
      raise ConfigError(f"remedy_rules.{task} names rules not in its sweep: {unknown}")
    return chosen
  return tuple(r for r in rules if r != REFERENCE_RULE)


def remedy_sweep(
  sweep: ml_collections.ConfigDict,
  variant: str,
  overrides: Mapping,
  rules: Sequence[str],
) -> ml_collections.ConfigDict:
  """The sweep of one remedy variant: ``rules`` only, with ``overrides`` on each of their cells.

  The overrides are merged after the base sweep's own per-rule overrides, so a
  rule keeps its steps and probe schedule and only the remedy changes.
  """
  base = sweep.to_dict()
  overrides = overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides)
  out = dict(base)
  out["name"] = f"{base['name']}_{variant}"
  out["rules"] = tuple(r for r in base["rules"] if r in rules)
  if not out["rules"]:
    raise ConfigError(f"variant {variant!r}: none of {tuple(rules)} is a rule of the sweep")
  out["rule_overrides"] = {
    r: _deep_merge(base["rule_overrides"].get(r, {}), overrides) for r in out["rules"]
  }
  out["task_rule_overrides"] = {
    task: {r: o for r, o in per_rule.items() if r in out["rules"]}
    for task, per_rule in base["task_rule_overrides"].items()
  }
  if "task_rule_learning_rates" in base:  # the chosen rates of the remedy's rules
    out["task_rule_learning_rates"] = {
      task: {r: rates for r, rates in per_rule.items() if r in out["rules"]}
      for task, per_rule in base["task_rule_learning_rates"].items()
    }
  return ml_collections.ConfigDict(out)


REPRODUCTION_FIELDS = (
  "name",
  "tasks",
  "remedies",
  "remedy_rules",
  "remedy_overrides",
  "lr_selection_dir",
  "claims",
)


def with_lr_selection(
  sweep: ml_collections.ConfigDict, task: str, rates: Mapping[str, float]
) -> ml_collections.ConfigDict:
  """A copy of ``sweep`` whose ``task`` cells of each rule in ``rates`` run at that rate only.

  Rules of ``rates`` not in the sweep are left out (a pilot may hold more rules
  than a sweep runs); the sweep's other rules keep ``sweep.learning_rates``.
  """
  out = ml_collections.ConfigDict(sweep.to_dict())
  chosen = {r: (float(lr),) for r, lr in rates.items() if r in tuple(out.rules)}
  if not chosen:
    return out
  if "task_rule_learning_rates" not in out:
    out.task_rule_learning_rates = ml_collections.ConfigDict()
  per_task = out.task_rule_learning_rates
  if task in per_task:
    per_task[task].update(chosen)
  else:
    per_task[task] = chosen
  return out


def selected_rates(folder: str, task: str) -> dict[str, float] | None:
  """The chosen rates of ``task`` in a selection folder (``None``: no selection there).

  Raises:
    ConfigError: the task's ``selection.json`` is for another task or lacks a rate.
  """
  path = os.path.join(folder, task, lr_selection.SELECTION)
  if not os.path.isfile(path):
    return None
  found, rates = lr_selection.chosen_rates(path)
  if found != task:
    raise ConfigError(f"{path} is the selection of task {found!r}, not {task!r}")
  return rates


def validate_reproduction(repro: ml_collections.ConfigDict) -> None:
  """Checks the reproduction config's own fields (its sweeps: :func:`plan`).

  Raises:
    ConfigError: a missing, unknown or invalid field.
  """
  unknown = sorted(set(repro.keys()) - set(REPRODUCTION_FIELDS))
  if unknown:
    raise UnknownFieldError(
      f"unknown reproduction config field(s) {unknown}; the known fields are "
      f"{sorted(REPRODUCTION_FIELDS)}"
    )
  missing = [f for f in ("name", "tasks", "remedies") if f not in repro]
  if missing:
    raise ConfigError(f"reproduction config lacks field(s) {missing}")
  if not repro.tasks:
    raise ConfigError("the reproduction's tasks is empty; it maps task names to sweep configs")
  for variant, overrides in repro.remedies.items():
    if not isinstance(overrides, Mapping | ml_collections.ConfigDict):
      raise ConfigError(
        f"remedies.{variant} must be a partial run config (a block), got {overrides!r}"
      )
  for field in ("remedy_rules", "remedy_overrides"):
    for task in (repro.get(field) or {}).keys():
      if task not in repro.tasks:
        raise ConfigError(f"{field} names task {task!r}, not in tasks {sorted(repro.tasks)}")
  if repro.get("claims") is not None:
    protocol_lib.validate(repro.claims)


def plan(
  repro: ml_collections.ConfigDict,
  tasks: Sequence[str] | None = None,
  variants: Sequence[str] | None = None,
  validate: bool = True,
) -> list[tuple[str, str, ml_collections.ConfigDict]]:
  """``(task, variant, sweep)`` for every sweep of the reproduction, base sweeps first per task.

  Args:
    repro: a reproduction config (module docstring).
    tasks: a subset of ``repro.tasks`` (default: all, in name order).
    variants: a subset of ``repro.remedies`` (default: all); ``()`` for none.
    validate: validate the reproduction config and every cell of every planned
      sweep (:func:`credit.sweeps.cells.expand`) before returning, so that a bad
      remedy is found before the first sweep runs, not hours later.

  Raises:
    ConfigError: an unknown task or variant, or an invalid field anywhere.
  """
  if validate:
    validate_reproduction(repro)
  all_tasks = sorted(repro.tasks)
  tasks = all_tasks if tasks is None else list(tasks)
  unknown = sorted(set(tasks) - set(all_tasks))
  if unknown:
    raise ConfigError(f"unknown task(s) {unknown}; the reproduction has {all_tasks}")
  all_variants = sorted(repro.remedies)
  variants = all_variants if variants is None else list(variants)
  unknown = sorted(set(variants) - set(all_variants))
  if unknown:
    raise ConfigError(f"unknown remedy variant(s) {unknown}; the reproduction has {all_variants}")
  if BASE in variants:
    raise ConfigError(f"{BASE!r} is the name of the sweep without remedies")
  folder = repro.get("lr_selection_dir") or None
  if folder is not None and not os.path.isdir(folder):
    raise ConfigError(f"lr_selection_dir {folder!r} is not a folder")
  out = []
  for task in tasks:
    sweep = repro.tasks[task]
    rates = selected_rates(folder, task) if folder else None
    if rates:
      sweep = with_lr_selection(sweep, task, rates)
    out.append((task, BASE, sweep))
    rules = remedy_rules(repro, task)
    extra = (repro.get("remedy_overrides") or {}).get(task) or {}
    extra = extra.to_dict() if hasattr(extra, "to_dict") else dict(extra)
    for variant in variants:
      overrides = _deep_merge(repro.remedies[variant].to_dict(), extra)
      out.append((task, variant, remedy_sweep(sweep, variant, overrides, rules)))
  if validate:
    from credit.sweeps import cells as cells_lib

    for task, variant, sweep in out:
      try:
        cells_lib.expand(sweep)
      except UnknownFieldError as err:
        raise UnknownFieldError(f"sweep {task}/{variant}: {err}") from None
      except ConfigError as err:
        raise ConfigError(f"sweep {task}/{variant}: {err}") from None
  return out
