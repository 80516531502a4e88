r"""Rules x seeds on delayed match to sample (the protocol is in configs/sweeps/common.py).

  python -m experiments.sweep --config=configs/sweeps/delayed_match_to_sample.py \
      --workdir=/tmp/delayed_match_to_sample
  python -m experiments.sweep --config=configs/sweeps/delayed_match_to_sample.py:smoke \
      --workdir=/tmp/smoke

Variants (``:a,b``): ``smoke`` (the task's own smoke config; for tests and CI).
"""

from configs.sweeps.common import task_sweep


def get_config(arg: str | None = None):
  return task_sweep("delayed_match_to_sample", arg)
