r"""Rules x seeds on evidence accumulation (the protocol is in configs/sweeps/common.py).

  python -m experiments.sweep --config=configs/sweeps/evidence_accumulation.py \
      --workdir=/tmp/evidence_accumulation
  python -m experiments.sweep --config=configs/sweeps/evidence_accumulation.py:smoke \
      --workdir=/tmp/smoke

Variants (``:a,b``): ``smoke`` (the task's own smoke config; for tests and CI).
"""

from configs.sweeps.common import task_sweep


def get_config(arg: str | None = None):
  return task_sweep("evidence_accumulation", arg)
