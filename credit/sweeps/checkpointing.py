"""Checkpoints of one cell: the stacked train state and the metrics so far (orbax).

A checkpoint is an orbax ``CheckpointManager`` step (the training step) with
two items:

* ``arrays``: a flat ``{name: NumPy array}`` of every leaf of the host copy
  of the stacked ``TrainState`` (``state/params/w_rec``, ...; PRNG keys as
  their raw key data) and of the metric history (``history/<metric>``,
  ``[num_seeds, num_evals]``, rows past ``num_evals`` unused);
* ``meta``: JSON with the step, the number of evaluations done, and a
  SHA-256 of all arrays.

Leaves are stored by name and put back into the structure of a template made
by the current code, so a checkpoint never needs pickled Python types.

Orbax writes a step into a temporary folder and renames it when complete, so
a process killed mid-save leaves no half step behind. A step that still fails
to restore or whose checksum does not match (a damaged disk, a truncated
copy) is moved to ``<cell>/damaged/`` with a warning, and the previous step is
tried; two steps are kept for this.

Saves are asynchronous (orbax's default): :meth:`CellCheckpointer.wait` must
run before the cell's results are declared final.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


class Restored(NamedTuple):
  """What a checkpoint holds: the host state tree, the history and its progress."""

  step: int
  num_evals: int
  state: Any
  history: dict[str, np.ndarray]


def _entry_name(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def flatten_named(tree, prefix: str) -> dict[str, np.ndarray]:
  """``{prefix/path/to/leaf: leaf}`` in tree order."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  out = {}
  for path, leaf in leaves:
    name = "/".join([prefix] + [_entry_name(e) for e in path])
    out[name] = np.asarray(leaf)
  return out


def unflatten_named(flat: dict[str, np.ndarray], template, prefix: str):
  """The inverse of :func:`flatten_named` given a template of the same structure."""
  names = list(flatten_named(template, prefix))
  treedef = jax.tree.structure(template)
  missing = [n for n in names if n not in flat]
  if missing:
    raise ValueError(f"checkpoint lacks arrays {missing[:5]}")
  return jax.tree.unflatten(treedef, [flat[n] for n in names])


def checksum(arrays: dict[str, np.ndarray]) -> str:
  """SHA-256 over names, dtypes, shapes and bytes of the arrays (in name order)."""
  h = hashlib.sha256()
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


class CellCheckpointer:
  """Saves and restores one cell's checkpoints under ``<cell_dir>/checkpoints``.

  Args:
    cell_dir: the cell's folder.
    keep: how many steps to keep (at least 2, so a damaged latest step has a
      fallback).
    active_processes: the processes that call this object (only process 0 in
      a multi-host sweep: see :mod:`credit.sweeps.runner`).
  """

  def __init__(self, cell_dir: str, keep: int = 2, active_processes: set[int] | None = None):
    self.cell_dir = os.path.abspath(cell_dir)
    self.directory = os.path.join(self.cell_dir, "checkpoints")
    self.keep = max(2, keep)
    self._multiprocessing = ocp.options.MultiprocessingOptions(
      primary_host=0, active_processes=active_processes
    )
    self.manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    # Made here rather than by orbax, which refuses ``create`` with ``active_processes``.
    os.makedirs(self.directory, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=self.keep,
      create=False,
      cleanup_tmp_directories=True,  # what a save killed midway left behind
      enable_async_checkpointing=True,
      multiprocessing_options=self._multiprocessing,
    )
    return ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, num_evals: int, state_host, history: dict[str, np.ndarray]) -> None:
    """Starts an asynchronous save; the arrays are copied first, so callers may reuse theirs."""
    arrays = {**flatten_named(state_host, "state"), **flatten_named(history, "history")}
    arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}
    meta = {"step": int(step), "num_evals": int(num_evals), "sha256": checksum(arrays)}
    self.manager.save(
      int(step),
      args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
      force=True,
    )

  def _restore_step(self, step: int, state_template, history_template) -> Restored:
    arrays_template = {
      **flatten_named(state_template, "state"),
      **flatten_named(history_template, "history"),
    }
    out = self.manager.restore(
      step,
      args=ocp.args.Composite(
        arrays=ocp.args.StandardRestore(arrays_template), meta=ocp.args.JsonRestore()
      ),
    )
    arrays = {k: np.asarray(v) for k, v in out.arrays.items()}
    meta = out.meta
    if meta.get("sha256") != checksum(arrays):
      raise ValueError("checksum mismatch: the stored arrays are not those that were saved")
    if int(meta["step"]) != step:
      raise ValueError(f"metadata says step {meta['step']}")
    return Restored(
      step=step,
      num_evals=int(meta["num_evals"]),
      state=unflatten_named(arrays, state_template, "state"),
      history=unflatten_named(arrays, history_template, "history"),
    )

  def restore_latest(self, state_template, history_template) -> Restored | None:
    """The newest step that restores intact, or ``None`` when there is none.

    Args:
      state_template: a host tree with the state's structure, shapes and dtypes.
      history_template: ``{metric: array [num_seeds, num_evals]}`` likewise.

    Returns:
      The restored checkpoint; damaged newer steps are moved aside with a warning.
    """
    self.manager.reload()
    damaged = False
    restored = None
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self._restore_step(step, state_template, history_template)
        break
      except Exception as err:  # noqa: BLE001 - any failure means "unusable", fall back
        damaged = True
        where = self._move_aside(step)
        message = (
          f"checkpoint step {step} in {self.directory} is damaged ({type(err).__name__}: "
          f"{str(err)[:200]}); moved it to {where} and falling back to the previous one"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        logging.warning(message)
    if damaged:
      # The manager caches its step list; start a fresh one over what is left.
      self.manager.close()
      self.manager = self._make_manager()
      if restored is None:
        warnings.warn(
          f"no intact checkpoint left in {self.directory}; the cell restarts from step 0",
          RuntimeWarning,
          stacklevel=2,
        )
    return restored

  def _move_aside(self, step: int) -> str:
    source = os.path.join(self.directory, str(step))
    target = os.path.join(self.cell_dir, "damaged", f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(source):
      shutil.move(source, target)
    return target

  def wait(self) -> None:
    """Blocks until every pending save is on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
