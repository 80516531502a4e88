r"""The field study: every online credit-assignment rule on seq-MNIST and two neuroscience tasks.

Issue 16. Rules (:data:`RULES`): BPTT (the reference), e-prop with symmetric and random
feedback, MDGL, UORO, KF-RTRL, R-KF-RTRL, SnAp-2, KeRNL, DNI and ModProp (offline form).
Each task's sweep has the main report's fit criterion (training score >= 0.95,
``fit_criteria``), λ_max of the W_rec Hessian and the cosine with BPTT (``align_cos``)
at every evaluation, and seed ``i`` starts from the same weights under every rule.
No remedies. The report (``REPORT.md``) has the main report's statistics, and
``figures/field_map.png`` places every rule on the plane of mean alignment with BPTT
against λ_max (:mod:`credit.analysis.field_map`). Launch::

  python -m experiments.reproduce --config=configs/reproduce/field.py --workdir=/tmp/field
  python -m experiments.reproduce --config=configs/reproduce/field.py:smoke --workdir=/tmp/fs

Sizes are chosen so that the whole study fits in about an hour on one CPU core (72 minutes
measured, below) and are smaller than the main report's, said per task:

* ``seq_mnist``: the reference network (ReLU, α = 1, no autapses, no Dale's law, L2 1e-2)
  at N = :data:`SEQ_MNIST_N` units and batch :data:`SEQ_MNIST_BATCH`, trained with Adam
  (lr :data:`SEQ_MNIST_LR`, not the reference's SGD lr 1e-2: at N = 32 SGD learns too
  slowly, see the pilot) for :data:`SEQ_MNIST_STEPS` steps, evaluated every
  :data:`SEQ_MNIST_EVERY` (the reference: N = 128, batch 256, SGD, 10,000 steps). Every rule
  has the same optimizer and rate. BPTT learns (training accuracy about 0.86 at the end)
  but does not reach the fit criterion (0.95; 0.89 after 4,000 steps in the pilot), nor
  does any other rule: on seq-MNIST no rule is compared at matched fit. The field map
  places every rule at the end of training (all rules after the same number of steps, not
  at the same fit), and the report compares the rules at the end of training and at a
  matched training loss (its section (g): the highest of the rules' median final training
  losses, so a level the worst rule reaches, early in BPTT's training).
  Without Dale's law MDGL and ModProp average over one cell type (all units).
* ``delayed_match_to_sample``: ``configs/sweeps/common.py``'s protocol (Dale's law for
  every rule, SGD lr 1e-2) at N = :data:`DMS_N` for :data:`DMS_STEPS` steps.
* ``pattern_generation``: the same protocol (Adam lr 1e-3, batch 1) at N = :data:`PG_N`
  for :data:`PG_STEPS` steps. Chosen over evidence accumulation, whose sequences are
  2.6 times longer (T = 270).

SnAp-2 is RTRL on a dense W_rec (its two-step pattern is full), :math:`O(N^4)` per example
and time step: it runs at N = :data:`SNAP2_N` on every task (the sweeps' ``task_rule_overrides``),
so its λ_max is of a smaller network (on a dense W_rec it is RTRL: its gradient is BPTT's,
a check of the map). UORO and R-KF-RTRL diverge at SGD lr 1e-2 (found when they were
tested); on the SGD tasks they train at :data:`SMALL_LR_SCALE` times the task's rate
(``remedies.lr_scale`` in their rule overrides: the results' ``learning_rate`` column shows
the task's rate, not the scaled one). On pattern generation (Adam lr 1e-3) every rule has
the task's rate.

Pilots (BPTT and e-prop, 2 seeds, no probes; final training score, mean ± sd over the 2
seeds). seq-MNIST at N = 32, batch 64: with the reference's SGD lr 1e-2, 1,000 steps, BPTT
0.21 and 0.38 (e-prop 0.10 and 0.21), and SGD lr 3e-2 diverges; with Adam, 2,000 steps:
lr 1e-3 BPTT 0.843 ± 0.045 (e-prop 0.250 ± 0.115), lr 3e-3 BPTT 0.857 ± 0.053 (e-prop
0.230 ± 0.091), lr 1e-2 BPTT 0.827 ± 0.028; Adam lr 3e-3 for 4,000 steps: BPTT 0.894 ±
0.010. Hence Adam lr 3e-3 and 2,000 steps (twice the steps buy 0.04 of BPTT accuracy at
twice the cost). UORO and R-KF-RTRL at Adam lr 3e-3 did not diverge in 600 steps (0.33,
0.30). Delayed match-to-sample 0.49 and 0.89 (e-prop 0.68 and 0.54) after 600 steps;
pattern generation R² 0.999 (e-prop 0.98, 0.999) after 2,000. Larger learning rates
diverge on delayed match (2e-2: 1 of 3 seeds). So on seq-MNIST, and on delayed match for
most rules, the map compares networks at the end of training; pattern generation is at
matched fit. UORO and R-KF-RTRL at their scaled rate did not diverge in 200 steps of delayed
match (still at chance) nor, at Adam's rate, in 400 of pattern generation. With more
compute, raise the steps per task (e.g.
``--config.tasks.seq_mnist.tasks.seq_mnist.num_steps=4000``).

Seeds: the main report's (:data:`configs.reproduce.all.SEEDS`): 10 per rule on seq-MNIST,
20 on delayed match and pattern generation, for every rule; seed ``i`` starts from the same
weights under every rule. (The first study had 10, and 5 for R-KF-RTRL and SnAp-2 on
seq-MNIST and delayed match.)

DNI on seq-MNIST: at Adam lr 3e-3 and its module's SGD rate 0.1 (``rule_options``'s default)
its synthetic gradient diverged in 8 of 10 seeds of the first study (the module's prediction
grew without bound: update norms 1e7 times BPTT's). Pilot (4 seeds, 2,000 steps, no probes;
diverged seeds, final training accuracy of the others): module rate 0.1 with lr 3e-3 4/4, with
lr 1e-3 3/4; module rate 0.01 with lr 3e-3 1/4 (0.16-0.21), with lr 1e-3 1/4 (0.35-0.45);
module rate 1e-3 with lr 3e-3 or 1e-3 1/4 (0.21-0.36). Seed 1 diverges within 500 steps in
every setting. Hence :data:`DNI_SEQ_MNIST_MODULE_LR` and :data:`SMALL_LR_SCALE` times the
task's rate for DNI on seq-MNIST.

Per-cell cost, measured in the study (``results/field``; ``seed_layout`` "auto" runs seeds
one after another on CPU, so a cell costs its compilation plus its seeds' steps and
evaluations, probes included): each cell's wall time on one core of a 2-core machine that
it shared with another job for most of the run (so 1.5-3 times the unloaded cost), from
its ``run_info.json``; in brackets the cell's seeds::

  rule            seq-MNIST (N=32)    delayed match (N=32)   pattern gen. (N=32)
  bptt                69 s (10)          36 s (20)              67 s (20)
  eprop               73 s (10)          43 s (20)              72 s (20)
  eprop_random        69 s (10)          43 s (20)              68 s (20)
  mdgl                49 s (10)          43 s (20)              69 s (20)
  uoro               395 s (10)         356 s (20)              86 s (20)
  kf_rtrl            161 s (10)         152 s (20)              41 s (20)
  r_kf_rtrl          381 s (10)         340 s (20)             116 s (20)
  snap2 (N=16)       394 s (10)         441 s (20)             276 s (20)
  kernl              111 s (10)          76 s (20)              32 s (20)
  dni                 31 s (10)          49 s (20)              25 s (20)
  modprop             76 s (10)          45 s (20)              26 s (20)
  total             1808 s             1623 s                  878 s     (71.8 CPU-minutes)

Before the study, per seed and training step (CPU ms, ``time.process_time`` after
compilation, lighter load; seq-MNIST / delayed match / pattern generation): BPTT 1.8 / 2.0 /
0.2, e-prop 1.1 / 2.2 / 0.2, MDGL 0.9 / 3.9 / 0.4, UORO 10.0 / 28.6 / 1.3, KF-RTRL 5.2 /
18.8 / 0.6, R-KF-RTRL 18.3 / 51.4 / 1.7, SnAp-2 (N = 16) 23.6 / 57.9 / 3.3, KeRNL 2.1 /
11.8 / 0.9, DNI 1.5 / 3.9 / 0.3, ModProp 1.8 / 3.2 / 0.2. Compilation is 10-20 s per cell.
SnAp-2 at N = 32 would cost about 16 times its N = 16 step, which is why it runs smaller.
The evaluation probes (128 validation examples, 10 Lanczos steps) are 30-40% of the
seq-MNIST cost.

Variants (``:a,b``): ``smoke`` (delayed match-to-sample only, :data:`SMOKE_RULES`, 8 units,
2 seeds, 20 steps: the pipeline end to end, figures and report included, in about 40 CPU
seconds, compilation most of it; for tests.)
"""

import importlib

from credit.reproduction import protocol
from credit.training.config import parse_variants

import ml_collections

from configs.reproduce.all import SEEDS

RULES = (
  "bptt",
  "eprop",
  "eprop_random",
  "mdgl",
  "uoro",
  "kf_rtrl",
  "r_kf_rtrl",
  "snap2",
  "kernl",
  "dni",
  "modprop",
)
TASKS = ("seq_mnist", "delayed_match_to_sample", "pattern_generation")
# The smoke variant: one task, BPTT and one approximate rule (with a scaled learning rate),
# enough for every figure and table of the report; compilation dominates its cost.
SMOKE_TASK, SMOKE_RULES = "delayed_match_to_sample", ("bptt", "r_kf_rtrl")
FIT_CRITERION = dict(metric="train_acc", at_least=0.95)

SEQ_MNIST_N, SEQ_MNIST_BATCH, SEQ_MNIST_STEPS, SEQ_MNIST_EVERY = 32, 64, 2000, 250
# seq-MNIST trains with Adam at this rate (the reference's SGD lr 1e-2 is too slow at N = 32).
SEQ_MNIST_OPTIMIZER, SEQ_MNIST_LR = "adam", 3e-3
DMS_N, DMS_STEPS, DMS_EVERY = 32, 600, 100
PG_N, PG_STEPS, PG_EVERY = 32, 2000, 200
SNAP2_N = 16
# Rules that need a smaller learning rate (they diverge at SGD lr 1e-2), and the factor.
SMALL_LR_RULES = ("uoro", "r_kf_rtrl")
SMALL_LR_SCALE = 0.3
# DNI on seq-MNIST: its synthetic-gradient module diverged in 8 of 10 seeds at Adam lr 3e-3
# and the module's SGD rate 0.1 (the first study); the pilot (module docstring) chose a
# smaller module rate and SMALL_LR_SCALE times the task's rate.
DNI_SEQ_MNIST_MODULE_LR = 0.01
# Validation examples of the curvature and alignment probes; Lanczos steps.
PROBE_BATCH, LANCZOS_STEPS = 128, 10


def _base(task: str, smoke: bool) -> ml_collections.ConfigDict:
  """The run config of ``task`` in the field study (module docstring)."""
  config = importlib.import_module(f"configs.{task}").get_config("smoke" if smoke else None)
  if task != "seq_mnist":
    config.model.dale = True  # MDGL and ModProp average over E/I types; every rule alike
  if smoke:
    config.model.n_hidden = 8
    config.num_steps, config.eval_every = 20, 10
    config.batch_size = min(config.batch_size, 16)
    probe_batch, lanczos = 16, 4
  else:
    n, steps, every = {
      "seq_mnist": (SEQ_MNIST_N, SEQ_MNIST_STEPS, SEQ_MNIST_EVERY),
      "delayed_match_to_sample": (DMS_N, DMS_STEPS, DMS_EVERY),
      "pattern_generation": (PG_N, PG_STEPS, PG_EVERY),
    }[task]
    config.model.n_hidden, config.num_steps, config.eval_every = n, steps, every
    if task == "seq_mnist":
      config.batch_size = SEQ_MNIST_BATCH
      config.optimizer.name, config.optimizer.learning_rate = SEQ_MNIST_OPTIMIZER, SEQ_MNIST_LR
    config.num_seeds = SEEDS[task]
    probe_batch, lanczos = PROBE_BATCH, LANCZOS_STEPS
  if task == "pattern_generation":
    probe_batch = min(probe_batch, config.task_options.eval_size)
  config.curvature.params = "w_rec"
  config.curvature.every = config.eval_every
  config.curvature.batch_size = probe_batch
  config.curvature.lanczos_steps = lanczos
  # Stop at a residual bound (at most ``lanczos`` steps): the seq-MNIST study's accuracy check
  # (benchmarks/results/lanczos_tolerance.json) gave the fixed-step λ_max to rounding.
  config.curvature.lanczos_tol = 1e-4
  config.curvature.top_k = 1
  config.alignment.every = 0  # cos(BPTT, BPTT) = 1: on for the other rules below
  config.alignment.batch_size = probe_batch
  return config


def task_sweep(task: str, smoke: bool = False) -> ml_collections.ConfigDict:
  """The field sweep of ``task``: :data:`RULES` x one learning rate, no remedies."""
  base = _base(task, smoke)
  sweep = ml_collections.ConfigDict()
  sweep.name = f"field_{task}" + ("_smoke" if smoke else "")
  sweep.tasks = ml_collections.ConfigDict({task: base})
  rules = SMOKE_RULES if smoke else RULES
  sweep.rules = rules
  sweep.learning_rates = ()  # the task's own optimizer.learning_rate (an override of it wins)
  overrides = {r: dict(alignment=dict(every=base.eval_every)) for r in rules if r != "bptt"}
  if base.optimizer.name == "sgd":
    for r in set(SMALL_LR_RULES) & set(rules):
      overrides[r]["remedies"] = dict(lr_scale=SMALL_LR_SCALE)
  if task == "seq_mnist" and "dni" in rules:
    overrides["dni"]["remedies"] = dict(lr_scale=SMALL_LR_SCALE)
    overrides["dni"]["rule_options"] = dict(dni_learning_rate=DNI_SEQ_MNIST_MODULE_LR)
  sweep.rule_overrides = ml_collections.ConfigDict(overrides)
  per_rule = {r: {} for r in rules}
  if "snap2" in rules:
    per_rule["snap2"]["model"] = dict(n_hidden=min(SNAP2_N, base.model.n_hidden))
  sweep.task_rule_overrides = ml_collections.ConfigDict(
    {task: {r: o for r, o in per_rule.items() if o}}
  )
  sweep.checkpoint_every = 0 if smoke else max(base.num_steps // 2, base.eval_every)
  sweep.fit_criteria = ml_collections.ConfigDict({task: dict(FIT_CRITERION)})
  return sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  smoke = "smoke" in parse_variants(arg)
  repro = ml_collections.ConfigDict()
  repro.name = "field" + ("_smoke" if smoke else "")
  tasks = (SMOKE_TASK,) if smoke else TASKS
  repro.tasks = ml_collections.ConfigDict({task: task_sweep(task, smoke) for task in tasks})
  repro.remedies = ml_collections.ConfigDict()
  repro.remedy_rules = ml_collections.ConfigDict()
  # The verdicts of its report, declared before any result is read (protocol.py says why).
  repro.claims = protocol.default()
  return repro
