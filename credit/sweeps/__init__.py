"""Sweeps over tasks x rules x learning rates x seeds: sharded, checkpointed, resumable.

* :mod:`~credit.sweeps.cells`: a sweep config expanded into cell run configs;
* :mod:`~credit.sweeps.sharding`: the seed axis sharded over every device;
* :mod:`~credit.sweeps.checkpointing`: orbax checkpoints of a cell;
* :mod:`~credit.sweeps.lock`: one sweep per workdir;
* :mod:`~credit.sweeps.runner`: the resumable loop (``run_sweep``);
* :mod:`~credit.sweeps.results`: the workdir layout, ``results.csv`` and
  ``summary.csv``.

Launcher: ``python -m experiments.sweep --config=configs/sweeps/<name>.py --workdir=DIR``.
"""

from credit.sweeps.cells import Cell, cell_id, expand
from credit.sweeps.runner import SweepResult, run_sweep
from credit.training.lock import WorkdirInUseError

__all__ = ["Cell", "SweepResult", "WorkdirInUseError", "cell_id", "expand", "run_sweep"]
