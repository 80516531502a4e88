r"""Rules x seeds on pattern generation (the protocol is in configs/sweeps/common.py).

  python -m experiments.sweep --config=configs/sweeps/pattern_generation.py \
      --workdir=/tmp/pattern_generation
  python -m experiments.sweep --config=configs/sweeps/pattern_generation.py:smoke \
      --workdir=/tmp/smoke

Variants (``:a,b``): ``smoke`` (the task's own smoke config; for tests and CI).
"""

from configs.sweeps.common import task_sweep


def get_config(arg: str | None = None):
  return task_sweep("pattern_generation", arg)
