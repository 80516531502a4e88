r"""Row-wise sequential MNIST, the reference protocol of Liu et al. (2022).

128 ReLU units without leak or autapses, plain SGD (lr 1e-2, batch 256),
L2 1e-2, 10,000 steps, 5 seeds vmapped together. Launch::

  python -m experiments.train --config=configs/seq_mnist.py --workdir=/tmp/seq_mnist
  python -m experiments.train --config=configs/seq_mnist.py:smoke --workdir=/tmp/smoke
  python -m experiments.train --config=configs/seq_mnist.py --workdir=/tmp/eprop \
      --config.rule=eprop --config.num_steps=16000 --config.eval_every=400

Variants (``:a,b``): ``smoke`` (tiny synthetic MNIST-shaped data, a few hundred
steps, well under a minute on 2 CPU cores; used by tests and CI), and with it a
rule's name for the rules that need other smoke settings to train
(``:smoke,uoro`` sets ``rule=uoro`` and :data:`SMOKE_RULE_SETTINGS`).

Why those settings, measured on the smoke task (2 seeds, 300 steps, issue 26): at
lr 1e-2 BPTT from the same seeds trains (validation accuracy 0.99, no seed
diverged) while UORO diverged in 1 of 2 seeds by step 100, R-KF-RTRL in 2 of 2 by
step 100 and DNI in 2 of 2 by step 300. KF-RTRL, KeRNL and ModProp trained at the
defaults (0.98, 0.79, 0.80). With the settings below no seed diverged: UORO at lr
3e-3 reached 0.49, DNI at lr 3e-3 0.42, R-KF-RTRL with ``clip_norm=5`` 0.30 (at lr
3e-3 alone 1 of 2 seeds still diverged). What makes these rules diverge at the
defaults was not measured (not the initial weights alone: BPTT from the same
weights does not); the measurements say only that smaller or clipped steps train.
"""

from credit.errors import ConfigError
from credit.training.config import base_config, parse_variants

# Smoke settings per rule (dotted field -> value), measured as the docstring says.
SMOKE_RULE_SETTINGS = {
  "uoro": {"optimizer.learning_rate": 3e-3},
  "r_kf_rtrl": {"optimizer.clip_norm": 5.0},
  "dni": {"optimizer.learning_rate": 3e-3},
}


def get_config(arg: str | None = None):
  variants = parse_variants(arg, known=("smoke", *SMOKE_RULE_SETTINGS))
  rules = sorted(variants & set(SMOKE_RULE_SETTINGS))
  if rules and "smoke" not in variants:
    raise ConfigError(
      f"the rule variant(s) {rules} are smoke settings: use :smoke,{rules[0]} (or set the "
      f"fields yourself: {SMOKE_RULE_SETTINGS[rules[0]]})"
    )
  if len(rules) > 1:
    raise ConfigError(f"one rule variant at a time, got {rules}")
  config = base_config("seq_mnist")
  if "smoke" in variants:
    config.task_options.source = "synthetic"
    config.task_options.train_eval_size = 512
    config.model.n_hidden = 32
    config.batch_size = 64
    config.num_steps = 300
    config.eval_every = 100
    config.num_seeds = 2
    # At 0.02 SGD sat at its edge of stability: float32 rounding decided whether a seed diverged.
    config.optimizer.learning_rate = 0.01
    config.seed = 1  # the reference init explodes for some seeds (cf. seed 0, key 1)
  for rule in rules:
    config.rule = rule
    for dotted, value in SMOKE_RULE_SETTINGS[rule].items():
      block, field = dotted.split(".")
      config[block][field] = value
  return config
