"""A sweep's files: per-cell outputs, the whole-sweep table and the per-cell summary.

Layout of a sweep workdir::

  sweep.json                    the resolved sweep config
  sweep.lock                    while a sweep runs (see credit.training.lock)
  results.csv                   every cell's metrics.csv, one tidy table
  summary.csv                   per task x rule x learning rate (credit.analysis.stats.summarize)
  figures/                      written by ``python -m experiments.figures``
  cells/<cell_id>/
    config.json                 the cell's resolved run config
    checkpoints/<step>/         orbax checkpoints (see credit.sweeps.checkpointing)
    metrics.csv, summary.json   as experiments/train.py writes them (credit.training.outputs)
    run_info.json               devices, wall time, resumed-from step
  cells/<cell_id>/summary.json  is written last: its presence marks a finished cell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from credit.analysis import stats
from credit.errors import WorkdirError
from credit.sweeps.cells import Cell
from credit.training import outputs

import numpy as np

RESULTS = "results.csv"
SUMMARY = "summary.csv"


def cell_dir(workdir: str, cell: Cell | str) -> str:
  return os.path.join(workdir, "cells", cell if isinstance(cell, str) else cell.id)


def is_finished(workdir: str, cell: Cell) -> bool:
  """A cell is finished once its ``summary.json`` exists (it is written last)."""
  return os.path.exists(os.path.join(cell_dir(workdir, cell), "summary.json"))


def check_cell_config(workdir: str, cell: Cell) -> None:
  """Checks the cell's ``config.json``, if any, against the cell's config (writes nothing).

  Raises:
    WorkdirError: the cell was started with another config; resuming would mix
      two experiments in one folder. Or it is finished but lacks the
      ``metrics.csv`` that the sweep's tables are built from (a results folder
      copied without its cells' metrics): found here, not after the other cells ran.
  """
  path = os.path.join(cell_dir(workdir, cell), "config.json")
  stored = outputs.read_config(path)
  if stored is not None and outputs.differing_fields(stored, outputs.config_dict(cell.config)):
    diff = outputs.config_differences(stored, outputs.config_dict(cell.config))
    raise WorkdirError(
      f"cell {cell.id} in {workdir} was started with another config ({diff}). Use a new "
      f"--workdir, or delete {cell_dir(workdir, cell)} to restart that cell."
    )
  if is_finished(workdir, cell) and not os.path.exists(
    os.path.join(cell_dir(workdir, cell), outputs.METRICS)
  ):
    raise WorkdirError(
      f"cell {cell.id} in {workdir} is finished (summary.json) but has no "
      f"{outputs.METRICS}, from which the sweep's results.csv is built (was the folder "
      f"copied without it?). Restore it, or delete {cell_dir(workdir, cell)} to run that "
      "cell again."
    )


def write_cell_config(workdir: str, cell: Cell) -> None:
  """Writes the cell's ``config.json`` unless it is there (checked by :func:`check_cell_config`)."""
  path = os.path.join(cell_dir(workdir, cell), "config.json")
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    outputs.write_config(path, cell.config)


def write_cell(
  workdir: str,
  cell: Cell,
  history: Mapping[str, np.ndarray],
  run_info: Mapping,
) -> None:
  """Writes a finished cell's ``metrics.csv``, ``run_info.json`` and, last, ``summary.json``."""
  folder = cell_dir(workdir, cell)
  seeds = tuple(range(cell.config.num_seeds))
  outputs.write_csv(
    os.path.join(folder, "metrics.csv"), outputs.metric_rows(cell.config, history, seeds)
  )
  outputs.write_json(os.path.join(folder, "run_info.json"), dict(run_info))
  outputs.write_json(
    os.path.join(folder, "summary.json"), outputs.summary_records(cell.config, history, seeds)
  )


def collect(workdir: str, cells: Sequence[Cell]) -> list[dict]:
  """The finished cells' metric rows, with NaN where a cell lacks another cell's metric."""
  rows = []
  for cell in cells:
    path = os.path.join(cell_dir(workdir, cell), "metrics.csv")
    if is_finished(workdir, cell):
      # read_results: a damaged file (a row cut short) is named with its line.
      rows.extend(outputs.read_results(path))
  names = stats.metric_names(rows)
  columns = list(outputs.ID_COLUMNS) + ["diverged"] + names
  return [{c: row.get(c, math.nan) for c in columns} for row in rows]


def write_results(workdir: str, cells: Sequence[Cell]) -> dict[str, str]:
  """Writes ``results.csv`` and ``summary.csv`` over the finished cells; returns their paths."""
  rows = collect(workdir, cells)
  paths = {"results": os.path.join(workdir, RESULTS), "summary": os.path.join(workdir, SUMMARY)}
  if not rows:
    return {}
  outputs.write_csv(paths["results"], rows)
  outputs.write_csv(paths["summary"], stats.summarize(stats.final_records(rows)))
  return paths


def load(workdir: str) -> tuple[list[dict], list[dict]]:
  """``(results rows, summary rows)`` of a sweep workdir, numbers converted.

  Raises:
    ResultsFileError: either file is missing, empty or malformed.
  """
  return (
    outputs.read_results(os.path.join(workdir, RESULTS)),
    outputs.read_results(os.path.join(workdir, SUMMARY), required=stats.CELL_COLUMNS),
  )
