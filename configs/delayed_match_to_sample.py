r"""Delayed match-to-sample (neurogym layout, rate inputs), trained with plain SGD.

Fixation 100, sample 200, delay U[200, 800], test 200, decision 200 ms at
dt = 20 ms (T = 105 with room for the test delays U[1000, 1400] ms); input
noise sigma = 1 (neurogym scaling), 2 in the test split. 64 ReLU units with tau = 100 ms (alpha =
0.2, ModProp's dlyXOR time constant), plain SGD lr 1e-2 (no momentum, so that
the sharpness can be read against 2/eta; every seed reaches 100% training
accuracy within ~500 steps), L2 1e-4, batch 64, 2,000 steps. Launch::

  python -m experiments.train --config=configs/delayed_match_to_sample.py --workdir=/tmp/dms
  python -m experiments.train --config=configs/delayed_match_to_sample.py:smoke \
      --workdir=/tmp/smoke

Variants (``:a,b``): ``smoke`` (32 units, delays U[100, 300] ms and test
U[400, 600] ms, 300 steps; seconds on 2 CPU cores; used by tests).
"""

from credit.training.config import base_config, parse_variants

DT = 20.0  # ms
TAU = 100.0  # ms


def get_config(arg: str | None = None):
  variants = parse_variants(arg)
  config = base_config("delayed_match_to_sample")
  config.task_options.dt = DT
  config.model.n_hidden = 64
  config.model.alpha = DT / TAU
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e-2
  config.reg_l2 = 1e-4
  config.batch_size = 64
  config.num_steps = 2000
  config.eval_every = 200
  config.num_seeds = 5
  if "smoke" in variants:
    o = config.task_options
    o.delay_min, o.delay_max = 100.0, 300.0
    o.test_delay_min, o.test_delay_max = 400.0, 600.0
    o.eval_size = 256
    config.model.n_hidden = 32
    config.optimizer.learning_rate = 2e-2
    config.batch_size = 32
    config.num_steps = 300
    config.eval_every = 150
    config.num_seeds = 2
  return config
