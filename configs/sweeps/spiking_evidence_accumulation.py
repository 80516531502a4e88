r"""Spiking rules x seeds on evidence accumulation (configs/spiking_evidence_accumulation.py).

BPTT with the surrogate gradient, e-prop (symmetric and random feedback) and
MDGL (:mod:`credit.rules.spiking`); Dale's law on for every rule, as in the rate
sweeps (MDGL's cell-type means need E/I types); lambda_max at every evaluation
by the curvature definition of the run config (``curvature.spiking_definition``,
the smoothed proxy by default), alignment with spiking BPTT for the other rules;
fit criterion: training accuracy >= 0.95 (``fit_criteria``); the rest of the
protocol is configs/sweeps/common.py. Launch::

  python -m experiments.sweep --config=configs/sweeps/spiking_evidence_accumulation.py \
      --workdir=/tmp/spiking_evidence_accumulation
  python -m experiments.sweep --config=configs/sweeps/spiking_evidence_accumulation.py:smoke \
      --workdir=/tmp/smoke

Variants (``:a,b``): ``smoke`` (the run config's own smoke variant).
"""

from configs.sweeps.common import task_sweep

RULES = ("bptt", "eprop", "eprop_random", "mdgl")


def get_config(arg: str | None = None):
  return task_sweep(
    "evidence_accumulation",
    arg,
    config_module="configs.spiking_evidence_accumulation",
    rules=RULES,
    name="spiking_evidence_accumulation",
  )
