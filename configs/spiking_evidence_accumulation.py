r"""Evidence accumulation (e-prop / MDGL cue task) for a spiking network of LIF and ALIF units.

The task of ``configs/evidence_accumulation.py`` (its inputs are already Poisson
spike cues, so no encoding; the test shift is longer delays plus Gaussian input
current noise) with 100 spiking units, half of them ALIF as in e-prop's LSNN
(``model.frac_adaptive = 0.5``: the adaptive threshold carries the evidence
across the delay). At dt = 10 ms: membrane tau 100 ms (``alpha =
exp(-dt/tau_m)``), adaptation tau 2 s (``rho = exp(-dt/tau_a)``), ``beta =
0.05``; reset by subtraction, triangle pseudo-derivative, leaky readout
(decay 0.9), ``init_gain = 5`` (see configs/spiking_seq_mnist.py). Adam lr
1e-3, L2 1e-4, batch 64, 1,000 steps. Curvature: the smoothed proxy at
temperature 0.1 (README *Spiking networks*). Launch::

  python -m experiments.train --config=configs/spiking_evidence_accumulation.py --workdir=/tmp/sea
  python -m experiments.train --config=configs/spiking_evidence_accumulation.py:smoke \
      --workdir=/tmp/smoke

Variants (``:a,b``): ``smoke`` (5 cues, delays U[100, 300] ms and test U[300,
500] ms, 32 units, 200 steps; under a minute on 2 CPU cores; used by tests).
"""

import math

from credit.training.config import base_config, parse_variants

from configs.evidence_accumulation import SHORT_EVIDENCE

DT = 10.0  # ms
TAU_M = 100.0  # ms
TAU_A = 2000.0  # ms


def get_config(arg: str | None = None):
  variants = parse_variants(arg)
  config = base_config("evidence_accumulation", model="lif")
  config.task_options.dt = DT
  m = config.model
  m.n_hidden = 100
  m.alpha = math.exp(-DT / TAU_M)
  m.rho = math.exp(-DT / TAU_A)
  m.frac_adaptive = 0.5
  m.beta = 0.05
  m.init_gain = 5.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.reg_l2 = 1e-4
  config.batch_size = 64
  config.num_steps = 1000
  config.eval_every = 200
  config.num_seeds = 5
  if "smoke" in variants:
    config.task_options.update(SHORT_EVIDENCE, eval_size=256)
    m.n_hidden = 32
    config.optimizer.learning_rate = 1e-2
    config.batch_size = 32
    config.num_steps = 200
    config.eval_every = 100
    config.num_seeds = 2
  return config
