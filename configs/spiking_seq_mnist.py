r"""Row-wise sequential MNIST for a spiking (LIF/ALIF) network, rows spike-encoded.

Each image row is one time step; the 28 pixel columns become spikes by
threshold crossings at the level 0.5 (``task_options.spike_encoding =
"threshold"``: an "up" spike when a column's value rises through 0.5 from one
row to the next, a "down" spike when it falls; 56 input channels,
deterministic, so the test shift is the pixel noise alone, reaching the network
as spurious and missing spikes). 128 LIF units (membrane decay 0.95, reset by
subtraction, triangle pseudo-derivative, no autapses), a leaky readout (decay
0.9) read at the last row, Adam lr 1e-3, L2 1e-4, batch 256, 10,000 steps.
``init_gain = 5``: at the rate model's initial scale the input, which enters
with ``1 - alpha``, leaves every unit silent, and a silent unit far below
threshold gets no surrogate gradient. Curvature: the smoothed proxy at
temperature 0.1 (``curvature.spiking_definition``, see README *Spiking
networks*). Launch::

  python -m experiments.train --config=configs/spiking_seq_mnist.py --workdir=/tmp/spk
  python -m experiments.train --config=configs/spiking_seq_mnist.py:smoke --workdir=/tmp/smoke
  python -m experiments.train --config=configs/spiking_seq_mnist.py --workdir=/tmp/alif \
      --config.model.frac_adaptive=0.5 --config.rule=eprop

Variants (``:a,b``): ``smoke`` (synthetic MNIST-shaped data, 32 units, 200
steps; seconds to a minute on 2 CPU cores; used by tests).
"""

from credit.training.config import base_config, parse_variants


def get_config(arg: str | None = None):
  variants = parse_variants(arg)
  config = base_config("seq_mnist", model="lif")
  config.task_options.spike_encoding = "threshold"
  config.task_options.spike_levels = (0.5,)
  config.model.n_hidden = 128
  config.model.init_gain = 5.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.reg_l2 = 1e-4
  if "smoke" in variants:
    config.task_options.source = "synthetic"
    config.task_options.train_eval_size = 512
    config.model.n_hidden = 32
    config.optimizer.learning_rate = 1e-2
    config.batch_size = 32
    config.num_steps = 200
    config.eval_every = 100
    config.num_seeds = 2
  return config
