r"""The reproduction's question asked of spiking networks: gap and λ_max per rule, matched fit.

Issue 15, item 5. Tasks (:data:`TASKS`): spike-encoded seq-MNIST
(``configs/spiking_seq_mnist.py``: threshold-crossing spikes of the pixel rows, LIF units)
and evidence accumulation (``configs/spiking_evidence_accumulation.py``: Poisson cue spikes,
half the units ALIF). Rules (:data:`RULES`): BPTT with the surrogate gradient, e-prop with
symmetric and random feedback, MDGL (:mod:`credit.rules.spiking`); Dale's law for every
rule, as in the rate sweeps; seed ``i`` starts from the same weights under every rule.
The report (``REPORT.md``) has the rate report's statistics (bootstrap CIs, Cliff's delta,
Mann-Whitney, Holm over the claims), at matched fit and at matched training loss. Launch::

  python -m experiments.reproduce --config=configs/reproduce/spiking.py --workdir=/tmp/spiking
  python -m experiments.reproduce --config=configs/reproduce/spiking.py:smoke --workdir=/tmp/ss
  python -m experiments.report --workdir=/tmp/spiking   # REPORT.md again, from the files

Curvature, both definitions of :mod:`credit.curvature.spiking` at every evaluation on the
same fixed batch of :data:`PROBE_BATCH` validation examples (``w_rec``, :data:`LANCZOS_STEPS`
Krylov steps): ``lambda_max`` is the smoothed proxy's Hessian (sigmoid of temperature 0.1
v_th; symmetric, Lanczos), the one the claims use (README *Spiking networks*);
``curvature.also_surrogate`` adds ``surrogate_lambda_max`` (λ_max of the symmetric part of
the surrogate-gradient map's Jacobian, spikes frozen) and ``jacobian_max_real`` (its largest
real eigenvalue, Arnoldi). ``lambda_max_precond`` (Adam) is of the proxy. The theory probe
refuses spiking networks (it linearizes the rate model's rules): the report's "theorem"
claim is "not tested". No remedies.

PILOT_NOTES

Variants (``:a,b``): ``smoke`` (both tasks' smoke configs, BPTT and e-prop, 2 seeds, 20
steps, 8 units: the pipeline end to end, both curvature definitions, figures and report;
for tests.)
"""

import importlib

from credit.training.config import parse_variants

import ml_collections

TASKS = ("seq_mnist", "evidence_accumulation")
RULES = ("bptt", "eprop", "eprop_random", "mdgl")
SMOKE_RULES = ("bptt", "eprop")
SEEDS = 10
# Per task: units, batch, Adam learning rate, steps, steps between evaluations.
SIZES = {
  "seq_mnist": dict(n_hidden=64, batch_size=128, learning_rate=1e-2, num_steps=1200, every=100),
  "evidence_accumulation": dict(
    n_hidden=64, batch_size=64, learning_rate=5e-3, num_steps=600, every=100
  ),
}
# Per task: the recurrent and input weights' initial scale (the run configs': 5).
INIT_GAIN = {"seq_mnist": 8.0, "evidence_accumulation": 5.0}
# Evidence accumulation with 5 cues and delays U[100, 300] ms (test: U[300, 500] ms and the
# input noise), as the run config's smoke variant: sequences about half as long.
SHORT_EVIDENCE = dict(
  n_cues=5,
  test_n_cues=5,
  delay_min=100.0,
  delay_max=300.0,
  test_delay_min=300.0,
  test_delay_max=500.0,
)
# Per task: the fit criterion (training score at some evaluation), see the module docstring.
FIT_CRITERIA = {
  "seq_mnist": dict(metric="train_acc", at_least=0.4),
  "evidence_accumulation": dict(metric="train_acc", at_least=0.9),
}
# Validation examples of the curvature and alignment probes; Lanczos (and Arnoldi) steps.
PROBE_BATCH, LANCZOS_STEPS = 128, 10


def _base(task: str, smoke: bool) -> ml_collections.ConfigDict:
  """The run config of ``task`` in the spiking study (module docstring)."""
  config = importlib.import_module(f"configs.spiking_{task}").get_config("smoke" if smoke else None)
  config.model.dale = True  # MDGL's cell-type means need E/I types; every rule alike
  if smoke:
    config.model.n_hidden = 8
    config.num_steps, config.eval_every = 20, 10
    config.batch_size = 16
    probe_batch, lanczos = 16, 4
  else:
    s = SIZES[task]
    config.model.n_hidden = s["n_hidden"]
    config.batch_size = s["batch_size"]
    config.optimizer.learning_rate = s["learning_rate"]
    config.num_steps, config.eval_every = s["num_steps"], s["every"]
    config.model.init_gain = INIT_GAIN[task]
    config.num_seeds = SEEDS
    if task == "evidence_accumulation":
      config.task_options.update(SHORT_EVIDENCE)
    probe_batch, lanczos = PROBE_BATCH, LANCZOS_STEPS
  c = config.curvature
  c.params = "w_rec"
  c.every = config.eval_every
  c.batch_size = probe_batch
  c.lanczos_steps = lanczos
  c.top_k = 1
  c.spiking_definition = "smoothed"
  c.also_surrogate = True
  config.alignment.every = 0  # cos(BPTT, BPTT) = 1: on for the other rules below
  config.alignment.batch_size = probe_batch
  return config


def task_sweep(task: str, smoke: bool = False) -> ml_collections.ConfigDict:
  """The spiking sweep of ``task``: the rules x one learning rate, no remedies."""
  base = _base(task, smoke)
  rules = SMOKE_RULES if smoke else RULES
  sweep = ml_collections.ConfigDict()
  sweep.name = f"spiking_{task}" + ("_smoke" if smoke else "")
  sweep.tasks = ml_collections.ConfigDict({task: base})
  sweep.rules = rules
  sweep.learning_rates = (base.optimizer.learning_rate,)
  sweep.rule_overrides = ml_collections.ConfigDict(
    {r: dict(alignment=dict(every=base.eval_every)) for r in rules if r != "bptt"}
  )
  sweep.task_rule_overrides = ml_collections.ConfigDict()
  sweep.checkpoint_every = 0 if smoke else max(base.num_steps // 2, base.eval_every)
  sweep.fit_criteria = ml_collections.ConfigDict({task: dict(FIT_CRITERIA[task])})
  return sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  smoke = "smoke" in parse_variants(arg)
  repro = ml_collections.ConfigDict()
  repro.name = "spiking" + ("_smoke" if smoke else "")
  repro.tasks = ml_collections.ConfigDict({task: task_sweep(task, smoke) for task in TASKS})
  repro.remedies = ml_collections.ConfigDict()
  repro.remedy_rules = ml_collections.ConfigDict()
  return repro
