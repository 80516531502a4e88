r"""The learning-rate pilot of the reproduction (issue 24): per task a sweep of rules x rates.

The declared protocol (:mod:`credit.analysis.lr_selection`): per task x rule a grid of
learning rates around the task's base rate (``GRID_FACTORS`` times it), ``PILOT_SEEDS``
seeds, the full training budget of the reproduction's base sweep
(``configs/reproduce/all.py``: the same rules, steps, evaluations, probes and fit
criterion); the rate is then chosen per rule by validation score at the end of training.
The pilot's seeds are fresh: ``seed = PILOT_SEED`` gives the keys
``split(key(100), 5)``, none of which is a key of the base sweep (``split(key(0), 20)``),
so where the chosen rate is the current one the committed base sweep already is the main
sweep with seeds the choice never saw.

One difference from the base sweep: no theory probe (it does not change training, only
measures it, and costs about as much as training on DMS). Launch, one task per sweep
(the rates differ per task, a sweep's ``learning_rates`` are shared by its tasks)::

  python -m experiments.sweep --config=configs/reproduce/lr_selection.py:delayed_match_to_sample \
      --workdir=/tmp/lr/delayed_match_to_sample
  python -m experiments.sweep --config=configs/reproduce/lr_selection.py:pattern_generation \
      --workdir=/tmp/lr/pattern_generation
  python -m experiments.lr_selection --workdir=/tmp/lr/delayed_match_to_sample \
      --out=results/reproduction/lr_selection/delayed_match_to_sample

Variants (``:task``, one of :data:`TASKS`; ``smoke`` with it: the task's smoke sweep with
two rates, for tests).
"""

import ml_collections

from configs.reproduce.all import task_sweep

TASKS = (
  "delayed_match_to_sample",
  "evidence_accumulation",
  "pattern_generation",
)
# Multiples of the task's base rate (DMS: plain SGD 1e-2; the Adam tasks 1e-3). The SGD
# edge of stability is at lambda_max = 2/eta: the base sweep's BPTT runs reach lambda_max
# ~40-80 at 1e-2, so x4 (4e-2, edge ~50) sits at or past the edge and x0.5 well inside it.
GRID_FACTORS = (0.5, 1.0, 2.0, 4.0)
SMOKE_FACTORS = (1.0, 2.0)
PILOT_SEEDS = 5
PILOT_SEED = 100


def _drop_theory(block: ml_collections.ConfigDict) -> None:
  if "theory" in block:
    block.theory.every = 0


def pilot_sweep(task: str, smoke: bool = False) -> ml_collections.ConfigDict:
  """The pilot sweep of ``task``: the base sweep's rules and budget, the grid, fresh seeds."""
  if task not in TASKS:
    raise ValueError(f"lr_selection has the tasks {TASKS}, got {task!r}")
  sweep = task_sweep(task, smoke)
  base = sweep.tasks[task]
  rate = float(base.optimizer.learning_rate)
  factors = SMOKE_FACTORS if smoke else GRID_FACTORS
  sweep.learning_rates = tuple(float(f"{f * rate:.6g}") for f in factors)
  sweep.name = f"lr_selection_{sweep.name}"
  if not smoke:
    base.num_seeds = PILOT_SEEDS
  base.seed = PILOT_SEED
  _drop_theory(base)
  for override in sweep.rule_overrides.values():
    _drop_theory(override)
  for per_rule in sweep.task_rule_overrides.values():
    for override in per_rule.values():
      _drop_theory(override)
  return sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = {p.strip() for p in (arg or "").split(",") if p.strip()}
  smoke = "smoke" in parts
  tasks = sorted(parts - {"smoke"})
  if len(tasks) != 1:
    raise ValueError(f"name one task of {TASKS} (':task' or ':task,smoke'), got {arg!r}")
  return pilot_sweep(tasks[0], smoke)
