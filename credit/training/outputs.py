"""What a run writes: the resolved config, a tidy ``metrics.csv`` and ``summary.json``.

``metrics.csv`` has one row per seed and evaluation step; ``summary.json`` one
record per seed with the final metrics. Both carry the identifying columns
(task, rule, learning_rate, seed) so that tables of many runs concatenate.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np

ID_COLUMNS = ("task", "rule", "learning_rate", "seed", "step")


def _scalar(value):
  value = np.asarray(value)
  if value.dtype == bool:
    return bool(value)
  if np.issubdtype(value.dtype, np.integer):
    return int(value)
  return float(value)


def run_identity(config: ml_collections.ConfigDict) -> dict:
  return {
    "task": config.task,
    "rule": config.rule,
    "learning_rate": float(config.optimizer.learning_rate),
  }


def metric_rows(
  config: ml_collections.ConfigDict,
  history: Mapping[str, np.ndarray],
  seeds: Sequence[int],
) -> list[dict]:
  """Tidy rows from ``history[name] [num_seeds, num_evals]``."""
  ident = run_identity(config)
  names = sorted(k for k in history if k != "step")
  steps = np.asarray(history["step"])
  rows = []
  for i, seed in enumerate(seeds):
    for j in range(steps.shape[1]):
      row = {**ident, "seed": int(seed), "step": int(steps[i, j])}
      row.update({k: _scalar(history[k][i, j]) for k in names})
      rows.append(row)
  return rows


def summary_records(
  config: ml_collections.ConfigDict,
  history: Mapping[str, np.ndarray],
  seeds: Sequence[int],
) -> list[dict]:
  """One record per seed: identity, number of steps and every final metric."""
  ident = run_identity(config)
  names = sorted(k for k in history if k != "step")
  records = []
  for i, seed in enumerate(seeds):
    rec = {**ident, "seed": int(seed), "steps": int(np.asarray(history["step"])[i, -1])}
    rec.update({k: _scalar(history[k][i, -1]) for k in names})
    records.append(rec)
  return records


def write_csv(path: str, rows: Sequence[Mapping]) -> None:
  if not rows:
    raise ValueError(f"no rows to write to {path}")
  columns = list(rows[0])
  for row in rows[1:]:
    columns += [k for k in row if k not in columns]
  tmp = f"{path}.tmp"
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


def read_csv(path: str) -> list[dict]:
  """Reads a table written by :func:`write_csv`, converting numbers and booleans."""

  def convert(v: str):
    if v in ("True", "False"):
      return v == "True"
    try:
      f = float(v)
    except ValueError:
      return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f

  with open(path, newline="") as f:
    return [{k: convert(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _json_safe(obj):
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  if isinstance(obj, dict):
    return {k: _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, list | tuple):
    return [_json_safe(v) for v in obj]
  return obj


def write_json(path: str, obj) -> None:
  """JSON with non-finite floats written as null (strict JSON has no NaN)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(_json_safe(obj), f, indent=2)
  os.replace(tmp, path)


def write_run(
  workdir: str,
  config: ml_collections.ConfigDict,
  history: Mapping[str, np.ndarray],
  seeds: Sequence[int],
) -> dict[str, str]:
  """Writes ``config.json``, ``metrics.csv`` and ``summary.json``; returns their paths."""
  os.makedirs(workdir, exist_ok=True)
  paths = {
    "config": os.path.join(workdir, "config.json"),
    "metrics": os.path.join(workdir, "metrics.csv"),
    "summary": os.path.join(workdir, "summary.json"),
  }
  with open(paths["config"], "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  write_csv(paths["metrics"], metric_rows(config, history, seeds))
  write_json(paths["summary"], summary_records(config, history, seeds))
  return paths
