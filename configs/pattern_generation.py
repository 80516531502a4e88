r"""Pattern generation (e-prop's frozen-noise task) with BPTT-ready defaults.

100 frozen Poisson inputs (50 Hz) to a sum of 4 sines over 1000 ms at
dt = 10 ms (T = 100). 100 ReLU units with tau = 50 ms (alpha = dt/tau = 0.2),
Adam (lr 1e-3, as e-prop trains this task; plain SGD at 1e-2 diverged for 2 of
3 seeds and at 3e-3 reached only R^2 ~ 0.92 in 2,000 steps), L2 1e-3, 2,000
steps. The training set is one pattern, so the batch is 1 (more copies of
the same noise-free pattern would only repeat the same gradient). Score: R^2;
test: the input with 5 ms spike-time jitter. With Dale's law (the sweep's setting) and the
variance-matched Dale init, BPTT reaches R^2 >= 0.95 in 20/20 seeds (first at step 200,
final R^2 0.998 +- 0.001, min 0.993; issue 13). Launch::

  python -m experiments.train --config=configs/pattern_generation.py --workdir=/tmp/pg
  python -m experiments.train --config=configs/pattern_generation.py:smoke --workdir=/tmp/smoke
  python -m experiments.train --config=configs/pattern_generation.py --workdir=/tmp/pg_sgd \
      --config.optimizer.name=sgd --config.optimizer.learning_rate=3e-3

Variants (``:a,b``): ``smoke`` (64 units, 300 steps, seconds on 2 CPU cores;
reaches R^2 > 0.9 on the training pattern; used by tests).
"""

from credit.training.config import base_config, parse_variants

DT = 10.0  # ms
TAU = 50.0  # ms


def get_config(arg: str | None = None):
  variants = parse_variants(arg)
  config = base_config("pattern_generation")
  config.task_options.dt = DT
  config.model.n_hidden = 100
  config.model.alpha = DT / TAU
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.reg_l2 = 1e-3
  config.batch_size = 1
  config.num_steps = 2000
  config.eval_every = 200
  config.num_seeds = 5
  if "smoke" in variants:
    config.task_options.eval_size = 32
    config.model.n_hidden = 64
    config.optimizer.learning_rate = 3e-3
    config.num_steps = 300
    config.eval_every = 150
    config.num_seeds = 2
    for block in ("curvature", "alignment", "theory"):  # probes read validation examples
      if block in config:
        config[block].batch_size = min(config[block].batch_size, 32)
  return config
