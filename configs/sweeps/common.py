"""The sweep shared by the tasks other than seq-MNIST (one config file per task).

Rules: BPTT and the bio-plausible family (e-prop with symmetric and random
feedback, RFLO, MDGL). Dale's law is on for **every** rule, not only MDGL:
MDGL's cell-type-averaged weights need E/I cell types, and all rules must
train the same network class for their gaps to be comparable. Steps,
evaluation interval, optimizer and learning rate come from the task's own
config (``configs/<task>.py``); lambda_max (W_rec Hessian) and the alignment
with BPTT are measured at every evaluation; 5 seeds.

Fit criterion (``sweep.fit_criteria``): a run counts as trained from its first
evaluation with training score >= 0.95 (accuracy on the two decision tasks, R²
on pattern generation); reports compare the rules there and list the runs that
never get there instead of averaging them in. Measured for BPTT with Dale's law (issue 13,
20 seeds): DMS (tanh, SGD 1e-2) 20/20, pattern generation 20/20; evidence accumulation 5/5
in the older 5-seed runs (not yet rerun with today's Dale init). On DMS a fitted network
can still fall back to chance later (3 of 20 seeds once, see configs/delayed_match_to_sample.py),
which is why the first fit, not the end of training, is the comparison point.
"""

import importlib

from credit.training.config import parse_variants

import ml_collections

RULES = ("bptt", "eprop", "eprop_random", "rflo", "mdgl")
FIT_CRITERION = dict(metric="train_acc", at_least=0.95)


def task_sweep(
  task: str,
  arg: str | None = None,
  config_module: str | None = None,
  rules: tuple[str, ...] = RULES,
  name: str | None = None,
) -> ml_collections.ConfigDict:
  """The sweep config of ``task``; ``arg`` may hold the ``smoke`` variant.

  ``config_module`` (default ``configs.<task>``) gives the run config,
  ``rules`` the swept rules and ``name`` the sweep's label (default ``task``).
  """
  smoke = "smoke" in parse_variants(arg)
  module = config_module or f"configs.{task}"
  base = importlib.import_module(module).get_config("smoke" if smoke else None)
  base.model.dale = True
  if not smoke:
    base.num_seeds = 5
  base.curvature.params = "w_rec"
  base.curvature.every = base.curvature.every or base.eval_every
  # Lanczos to a 1e-4 residual bound on lambda_max, the only eigenvalue the reports read.
  base.curvature.lanczos_tol = 1e-4
  base.curvature.top_k = 1
  base.alignment.every = 0  # off for BPTT (cosine 1), on for the others below
  if smoke:
    base.curvature.batch_size = min(base.curvature.batch_size, 64)
    base.curvature.lanczos_steps = min(base.curvature.lanczos_steps, 8)
    base.alignment.batch_size = min(base.alignment.batch_size, 64)

  sweep = ml_collections.ConfigDict()
  sweep.name = (name or task) + ("_smoke" if smoke else "")
  sweep.tasks = ml_collections.ConfigDict({task: base})
  sweep.rules = tuple(rules)
  sweep.learning_rates = ()  # the task's own optimizer.learning_rate (an override of it wins)
  sweep.rule_overrides = ml_collections.ConfigDict(
    {r: dict(alignment=dict(every=base.eval_every)) for r in rules if r != "bptt"}
  )
  sweep.task_rule_overrides = ml_collections.ConfigDict()
  every = max(base.eval_every, base.num_steps // 5 // base.eval_every * base.eval_every)
  sweep.checkpoint_every = every
  sweep.fit_criteria = ml_collections.ConfigDict({task: dict(FIT_CRITERION)})
  return sweep
