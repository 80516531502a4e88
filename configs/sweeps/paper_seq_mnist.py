r"""The reference protocol of Liu et al. (2022) on row-wise sequential MNIST.

BPTT trains 10,000 steps (evaluations and lambda_max every 250 steps); the
three-factor rule trains 16,000 steps (every 400), as BiolHessRNN's
``run_saveHessRNN.sh``. The three-factor rule appears twice, as
``three_factor_autodiff`` (stop-gradient surgery, as the reference code) and
``eprop`` (explicit traces): on this leak-free network they are the same rule,
so the two rows check each other. SGD, lr 1e-2, batch 256, L2 1e-2, 5 seeds
(seed ``i`` starts from the same weights under every rule). lambda_max is
the top eigenvalue of the W_rec Hessian of the exact loss (+ L2) on 256
validation examples; a run counts as trained from its first evaluation with
training accuracy >= 0.95 (``fit_criteria``); ``align_cos`` is the cosine
between the rule's gradient and BPTT's (not measured for BPTT itself). Launch::

  python -m experiments.sweep --config=configs/sweeps/paper_seq_mnist.py --workdir=/tmp/paper
  python -m experiments.sweep --config=configs/sweeps/paper_seq_mnist.py:smoke --workdir=/tmp/s
  python -m experiments.figures --workdir=/tmp/paper

Variants (``:a,b``): ``smoke`` (synthetic MNIST-shaped data, 32 units, 2
seeds, 200 / 320 steps; for tests and CI).
"""

from credit.training.config import parse_variants

import ml_collections

from configs import seq_mnist

APPROXIMATE_RULES = ("three_factor_autodiff", "eprop")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  smoke = "smoke" in parse_variants(arg)
  base = seq_mnist.get_config("smoke" if smoke else None)
  base.curvature.params = "w_rec"
  # Lanczos to a 1e-4 residual bound on lambda_max (configs/reproduce/seq_mnist.py's setting).
  base.curvature.lanczos_tol = 1e-4
  base.curvature.top_k = 1
  if smoke:
    bptt_steps, bptt_every, other_steps, other_every = 200, 50, 320, 80
    base.curvature.batch_size = 64
    base.curvature.lanczos_steps = 8
    base.alignment.batch_size = 64
  else:
    bptt_steps, bptt_every, other_steps, other_every = 10_000, 250, 16_000, 400
    base.curvature.batch_size = 256
    base.curvature.lanczos_steps = 20  # the most; the tolerance stops it sooner
    base.alignment.batch_size = 256
  base.num_steps, base.eval_every = bptt_steps, bptt_every
  base.curvature.every = bptt_every
  base.alignment.every = 0  # cos(BPTT, BPTT) = 1: measured for the other rules only

  sweep = ml_collections.ConfigDict()
  sweep.name = "paper_seq_mnist" + ("_smoke" if smoke else "")
  sweep.tasks = ml_collections.ConfigDict({"seq_mnist": base})
  sweep.rules = ("bptt",) + APPROXIMATE_RULES
  # (): the task's own optimizer.learning_rate (1e-2), so that an override of it takes effect.
  sweep.learning_rates = ()
  # One dict per rule: a shared one would become one ConfigDict, and overriding
  # --config.rule_overrides.eprop.num_steps would change every rule.
  sweep.rule_overrides = ml_collections.ConfigDict(
    {
      rule: dict(
        num_steps=other_steps,
        eval_every=other_every,
        curvature=dict(every=other_every),
        alignment=dict(every=other_every),
      )
      for rule in APPROXIMATE_RULES
    }
  )
  sweep.task_rule_overrides = ml_collections.ConfigDict()
  sweep.checkpoint_every = 100 if smoke else 2000
  sweep.fit_criteria = ml_collections.ConfigDict(
    {"seq_mnist": dict(metric="train_acc", at_least=0.95)}
  )
  return sweep
