"""What a run writes: the resolved config, a tidy ``metrics.csv`` and ``summary.json``.

``metrics.csv`` has one row per seed and evaluation step; ``summary.json`` one
record per seed with the final metrics (:func:`credit.analysis.stats.final_records`:
every value from one evaluation, divergence marked with its step and reason).
Both carry the identifying columns (task, rule, learning_rate, seed) so that
tables of many runs concatenate.

:class:`RunWriter` writes them as the run goes: the workdir is checked and
``config.json`` written before anything is compiled, ``metrics.csv`` grows by
one block of rows per evaluation, and ``summary.json`` comes last, so it marks
a finished run and a crash at step k keeps every evaluation up to k. A
finished run is never replaced silently (:meth:`RunWriter.start`).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

from credit.analysis import stats
from credit.errors import ResultsFileError, WorkdirError
from credit.training.config import base_config
from credit.training.lock import RUN_LOCK, WorkdirLock

import ml_collections
import numpy as np

ID_COLUMNS = ("task", "rule", "learning_rate", "seed", "step")
CONFIG = "config.json"
METRICS = "metrics.csv"
SUMMARY = "summary.json"


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
  """One record per seed: identity, run length and final metrics.

  ``steps`` is the run's last evaluation; the metric values, ``diverged``,
  ``diverged_step``, ``diverged_reason`` and ``step`` (the evaluation the values
  are from: ``steps``, or the last evaluation before the seed diverged) are those
  of :func:`credit.analysis.stats.final_records`, as in a sweep's ``summary.csv``.
  """
  rows = metric_rows(config, history, seeds)
  last = int(np.max(np.asarray(history["step"])))
  records = []
  for rec in stats.final_records(rows):
    out = {k: rec[k] for k in stats.RUN_COLUMNS}
    out["steps"] = last
    out["step"] = rec["step"]
    out["diverged"] = rec["diverged"]
    out["diverged_step"] = rec["diverged_step"] if rec["diverged"] else None
    out["diverged_reason"] = rec["diverged_reason"] or None
    out.update({k: v for k, v in rec.items() if k not in out and k not in stats.NON_METRICS})
    records.append(out)
  return records


def write_atomically(path: str, data: str | bytes) -> bool:
  """Writes ``data`` whole to ``path``, or leaves ``path`` as it was; ``False``: unchanged.

  A file that already holds exactly ``data`` is not touched (a rerun of a finished
  job rewrites nothing, so a full disk cannot cost it a file). Otherwise the
  bytes go to a temporary file in the same folder, renamed over ``path`` once
  complete; a write that fails (disk full, read-only) removes that temporary
  file and re-raises, so the folder is as it was.
  """
  data = data.encode() if isinstance(data, str) else data
  if os.path.isfile(path) and os.path.getsize(path) == len(data):
    with open(path, "rb") as f:
      if f.read() == data:
        return False
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return True


@contextlib.contextmanager
def restored_on_failure(folder: str, patterns: Sequence[str]):
  """Files of ``folder`` matching ``patterns`` are replaced whole by the block, or not at all.

  They are moved aside (a rename: no disk space needed) before the block runs;
  if it raises (a full disk part way through a table or a figure), what it wrote
  is removed and they come back. For writers that write in place.
  """
  existing = sorted({p for pat in patterns for p in glob.glob(os.path.join(folder, pat))})
  aside = {p: f"{p}.keep-{os.getpid()}" for p in existing}
  for path, kept in aside.items():
    os.replace(path, kept)
  try:
    yield
  except BaseException:
    for pat in patterns:
      for path in glob.glob(os.path.join(folder, pat)):
        with contextlib.suppress(OSError):
          os.remove(path)
    for path, kept in aside.items():
      os.replace(kept, path)
    raise
  for kept in aside.values():
    with contextlib.suppress(OSError):
      os.remove(kept)


def csv_text(rows: Sequence[Mapping]) -> str:
  """The table as CSV text: a header of every column (in first-seen order), then rows."""
  columns = list(rows[0])
  for row in rows[1:]:
    columns += [k for k in row if k not in columns]
  buf = io.StringIO(newline="")
  writer = csv.DictWriter(buf, fieldnames=columns)
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def write_csv(path: str, rows: Sequence[Mapping]) -> None:
  if not rows:
    raise ValueError(f"no rows to write to {path}")
  write_atomically(path, csv_text(rows))


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


RESULTS_COLUMNS = ("task", "rule", "learning_rate", "seed", "step")


def read_results(path: str, required: Sequence[str] = RESULTS_COLUMNS) -> list[dict]:
  """Reads a results table (``results.csv``, ``metrics.csv``), refusing a bad one.

  Raises:
    ResultsFileError: the file is missing, empty, has no data rows, lacks a
      column of ``required``, has rows longer or shorter than its header, ends
      in the middle of a row, has a non-numeric ``learning_rate``, ``seed`` or
      ``step``, or fails :func:`check_evaluations` (a repeated evaluation, a seed
      or a finished run whose rows stop early).
  """
  if not os.path.isfile(path):
    raise ResultsFileError(f"{path} does not exist (run the sweep or experiment first)")
  if os.path.getsize(path) == 0:
    raise ResultsFileError(f"{path} is empty (0 bytes): a run that wrote nothing")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    raw = list(reader)
  missing = [c for c in required if c not in header]
  if missing:
    raise ResultsFileError(f"{path} lacks the column(s) {missing}; its header is {header}")
  if not raw:
    raise ResultsFileError(f"{path} has a header but no rows")
  for line, row in enumerate(raw, start=2):
    if None in row or any(v is None for v in row.values()):
      raise ResultsFileError(
        f"{path}, line {line}: the row has a different number of fields than the header"
      )
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    if f.read(1) != b"\n":  # every writer ends each row with one: the file was cut short
      raise ResultsFileError(
        f"{path}, line {len(raw) + 1}: the file ends in the middle of a row (cut short, e.g. "
        "by a full disk or a killed copy); restore it, or delete it and rerun what wrote it"
      )
  rows = read_csv(path)
  for line, row in enumerate(rows, start=2):
    for column in ("learning_rate", "seed", "step"):
      if column in required and not isinstance(row[column], int | float):
        raise ResultsFileError(
          f"{path}, line {line}: {column} must be a number, got {row[column]!r}"
        )
  if all(c in header for c in ID_COLUMNS):
    check_evaluations(path, rows)
  return rows


def check_evaluations(path: str, rows: Sequence[Mapping]) -> None:
  """Every (task, rule, learning rate, seed, step) once; every seed of a run evaluated at the
  same steps; and each finished run's evaluations up to its ``num_steps``.

  A results table with a repeated row (two writers on one file), a seed whose rows
  stop early, or a run whose rows all stop before its configured end would give
  statistics of other runs than the ones named, with no sign of it: refused here.
  ``num_steps`` is read from the run's ``config.json``, when there is one: beside a
  finished run's ``metrics.csv``, or ``cells/<task>-<rule>-lr<η>/`` beside a sweep's
  ``results.csv``.

  Raises:
    ResultsFileError: naming the file, the run and the lines or steps at fault.
  """
  first_line: dict[tuple, int] = {}
  steps: dict[tuple, dict[int, list[int]]] = {}
  for line, row in enumerate(rows, start=2):
    key = tuple(row[c] for c in ID_COLUMNS)
    if key in first_line:
      raise ResultsFileError(
        f"{path}, lines {first_line[key]} and {line}: the same evaluation twice (task "
        f"{key[0]}, rule {key[1]}, learning_rate {key[2]}, seed {key[3]}, step {key[4]}); two "
        "runs wrote into one file, or files were concatenated. Rerun that run into its own "
        "workdir"
      )
    first_line[key] = line
    steps.setdefault(key[:3], {}).setdefault(key[3], []).append(key[4])
  folder = os.path.dirname(os.path.abspath(path))
  for run, per_seed in steps.items():
    name = f"task {run[0]}, rule {run[1]}, learning_rate {run[2]}"
    ends = {seed: max(s) for seed, s in per_seed.items()}
    full = max(ends.values())
    short = sorted(seed for seed, end in ends.items() if end < full)
    if short:
      raise ResultsFileError(
        f"{path}: the rows of seed(s) {short} ({name}) stop at step "
        f"{min(ends[s] for s in short)}, the other seeds' go to step {full}: rows are missing"
      )
    expected = _configured_steps(folder, os.path.basename(path), run)
    if expected is not None and full < expected:
      raise ResultsFileError(
        f"{path}: the rows of {name} stop at step {full}, but that run was configured for "
        f"num_steps={expected} and is finished: its later rows are missing (a copy cut "
        "short?). Restore the file, or rerun the run"
      )


def _configured_steps(folder: str, name: str, run: tuple) -> int | None:
  """``num_steps`` of the finished run ``(task, rule, learning_rate)`` of a results file."""
  if name == METRICS:
    if not os.path.exists(os.path.join(folder, SUMMARY)):
      return None  # an unfinished run: its rows end where it stopped
    config_path = os.path.join(folder, CONFIG)
  else:
    task, rule, lr = run
    try:
      cell = f"{task}-{rule}-lr{float(lr):g}"  # credit.sweeps.cells.cell_id
    except (TypeError, ValueError):
      return None
    config_path = os.path.join(folder, "cells", cell, CONFIG)
  stored = read_config(config_path)
  value = (stored or {}).get("num_steps")
  return value if isinstance(value, int) and not isinstance(value, bool) else None


def _json_safe(obj):
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  if isinstance(obj, dict):
    return {k: _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, list | tuple):
    return [_json_safe(v) for v in obj]
  return obj


def write_json(path: str, obj) -> None:
  """JSON with non-finite floats written as null (strict JSON has no NaN), atomically."""
  write_atomically(path, json.dumps(_json_safe(obj), indent=2))


def check_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that files can be written in it.

  Returns:
    Its absolute path.

  Raises:
    WorkdirError: it is an existing file, cannot be created, or is not writable.
  """
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"workdir {path} is an existing file, not a folder")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as err:
    raise WorkdirError(f"cannot create workdir {path}: {err.strerror or err}") from None
  try:
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
      pass
  except OSError as err:
    raise WorkdirError(f"workdir {path} is not writable: {err.strerror or err}") from None
  return path


def _flat(d: Mapping, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


_ABSENT = object()


def differing_fields(stored: Mapping, current: Mapping) -> list[str]:
  """The fields (dotted paths) where a stored config and the current one differ.

  A field the stored config lacks is no difference when the current config holds
  it at its default (:func:`credit.training.config.base_config` of the task): it
  was added to the schema after the run started, and a new field's default keeps
  the old behaviour (e.g. ``optimizer.clip_norm = 0``, no clipping).
  """
  a, b = _flat(stored), _flat(current)
  defaults = _flat(config_dict(base_config(current.get("task", "seq_mnist"))))
  return sorted(
    k
    for k in set(a) | set(b)
    if a.get(k, _ABSENT) != b.get(k, _ABSENT)
    and not (k not in a and k in defaults and b.get(k) == defaults[k])
  )


def config_differences(stored: Mapping, current: Mapping, limit: int = 6) -> str:
  """``field: old -> new, ...`` for the :func:`differing_fields` of two config dicts."""
  a, b = _flat(stored), _flat(current)
  diff = differing_fields(stored, current)
  shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:limit])
  return shown + (", ..." if len(diff) > limit else "")


def config_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON data (what ``config.json`` holds)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def write_config(path: str, config: ml_collections.ConfigDict) -> None:
  """Writes ``config.json`` atomically; ``inf`` stays ``Infinity`` so it reads back equal."""
  write_atomically(path, config.to_json_best_effort(indent=2, sort_keys=True))


def read_config(path: str) -> dict | None:
  """A stored ``config.json`` (``None`` when missing; unreadable: a dict saying so)."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {"<unreadable config.json>": True}


REPLACED = ".replaced"  # a run being replaced waits here until its successor has results


class RunWriter:
  """Writes one run's files into its workdir as the run goes.

  ``start`` (before anything is compiled), then ``append`` at each evaluation,
  then ``finish``; ``abandon`` when the run fails. ``lock`` holds the workdir's
  ``run.lock`` (:mod:`credit.training.lock`) from ``start`` to ``finish`` or
  ``abandon``, so two runs cannot write one ``metrics.csv``.

  A run that is replaced (``--overwrite``, or an unfinished run of the same config
  started over) is not deleted at ``start``: its files are moved into
  ``<workdir>/.replaced/`` and deleted only once the new run has written its first
  evaluation. A new run that fails before that (its data cannot be loaded, a
  config error found late, a full disk) gets ``abandon``: the old files come back.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, seeds: Sequence[int]):
    self.workdir = os.path.abspath(workdir)
    self.config = config
    self.seeds = tuple(seeds)
    self.paths = {
      "config": os.path.join(self.workdir, CONFIG),
      "metrics": os.path.join(self.workdir, METRICS),
      "summary": os.path.join(self.workdir, SUMMARY),
    }
    self.replaced = os.path.join(self.workdir, REPLACED)
    self.columns: list[str] | None = None
    self.lock: WorkdirLock | None = None

  def start(self, overwrite: bool = False) -> bool:
    """Checks the workdir and writes ``config.json``; ``False``: the run is already done.

    A workdir holding a finished run (its ``summary.json``) with the same
    config needs nothing: this returns ``False``. With another config it is
    refused, and so is an unfinished run of another config that has written
    metrics. An unfinished run of the same config starts over (a single run
    keeps no checkpoints).
    ``overwrite=True`` replaces whatever run is there.

    Raises:
      WorkdirError: the workdir is unusable or holds another run.
      WorkdirInUseError: another live run holds the workdir.
    """
    check_workdir(self.workdir)
    self.lock = WorkdirLock(self.workdir, RUN_LOCK, "run")
    self.lock.acquire()
    try:
      return self._start(overwrite)
    except BaseException:
      self._release()
      raise

  def _start(self, overwrite: bool) -> bool:
    self._recover()
    current = config_dict(self.config)
    stored = read_config(self.paths["config"])
    finished = os.path.exists(self.paths["summary"])
    # A config.json alone is a run stopped before its first evaluation (e.g. a batch
    # larger than the data): nothing to lose, so a corrected config may replace it.
    present = finished or os.path.exists(self.paths["metrics"])
    if present and not overwrite:
      same = stored is not None and not differing_fields(stored, current)
      if finished and same:
        self._release()
        return False
      state = "a finished run" if finished else "an unfinished run"
      if not same:
        diff = config_differences(stored or {}, current) if stored else "no readable config.json"
        raise WorkdirError(
          f"workdir {self.workdir} holds {state} with another config ({diff}). Use a new "
          "--workdir, or --overwrite to replace that run."
        )
    if present:
      os.makedirs(self.replaced, exist_ok=True)
      for path in self.paths.values():
        if os.path.exists(path):
          os.replace(path, os.path.join(self.replaced, os.path.basename(path)))
    elif os.path.exists(self.paths["config"]):
      os.remove(self.paths["config"])
    write_config(self.paths["config"], self.config)
    return True

  def _recover(self) -> None:
    """Settles a replacement that a killed process left half done.

    Without the new run's ``metrics.csv`` the old run comes back; with it the old
    one is gone for good.
    """
    if not os.path.isdir(self.replaced):
      return
    if not os.path.exists(self.paths["metrics"]):
      for name in os.listdir(self.replaced):
        os.replace(os.path.join(self.replaced, name), os.path.join(self.workdir, name))
    shutil.rmtree(self.replaced, ignore_errors=True)

  def _release(self) -> None:
    if self.lock is not None:
      self.lock.release()
      self.lock = None

  def append(self, metrics: Mapping[str, np.ndarray]) -> None:
    """Appends one evaluation (``metrics[name]``: one value per seed) to ``metrics.csv``.

    One write per evaluation; a write that fails part way (disk full) is cut back,
    so the file holds whole evaluations only.
    """
    history = {k: np.asarray(v).reshape(len(self.seeds), 1) for k, v in metrics.items()}
    rows = metric_rows(self.config, history, self.seeds)
    first = self.columns is None
    columns = list(rows[0]) if first else self.columns
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    if first:
      writer.writeheader()
    writer.writerows(rows)
    path = self.paths["metrics"]
    size = 0 if first or not os.path.exists(path) else os.path.getsize(path)
    try:
      with open(path, "w" if first else "a", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
    except OSError:
      with contextlib.suppress(OSError):
        if first:
          os.remove(path)
        else:
          os.truncate(path, size)
      raise
    self.columns = columns
    if first and os.path.isdir(self.replaced):  # the new run has results: the old one goes
      shutil.rmtree(self.replaced, ignore_errors=True)

  def finish(self, history: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Writes ``summary.json`` (last: it marks the run finished); returns the paths."""
    try:
      write_json(self.paths["summary"], summary_records(self.config, history, self.seeds))
    finally:
      self._release()
    return dict(self.paths)

  def abandon(self) -> None:
    """After a failure: brings a replaced run back if the new one wrote no results yet,
    and releases the lock. What the new run did write (``config.json``, whole
    evaluations of ``metrics.csv``) stays, as after a crash."""
    try:
      if os.path.isdir(self.replaced) and not os.path.exists(self.paths["metrics"]):
        if os.path.exists(self.paths["config"]):
          os.remove(self.paths["config"])
        self._recover()
    finally:
      self._release()
