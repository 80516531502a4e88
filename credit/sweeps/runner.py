"""The resumable sweep loop: every cell, its seeds sharded over every device.

For each cell (task x rule x learning rate, see :mod:`credit.sweeps.cells`):

1. skip it when it is finished (its ``summary.json`` exists);
2. build its Trainer (tasks are built once and shared by their cells) and
   jit its pieces with the seed axis sharded (:mod:`credit.sweeps.sharding`);
3. restore its newest intact checkpoint, if any, else initialize;
4. run ``eval_every``-step chunks, evaluating after each, exactly as
   :func:`credit.training.run.run_seeds` does, checkpointing every
   ``checkpoint_every`` steps (at the first evaluation at or past each
   multiple) and at the end;
5. write its outputs, and ``results.csv`` and ``summary.csv`` over the
   cells finished so far (:mod:`credit.sweeps.results`).

A resumed cell replays the same chunks from the same state as an
uninterrupted run, so it ends with bitwise the same metrics (on the same
machine and device count: XLA:CPU's matmul blocking depends on the size of
its thread pool, which is the larger of the core count and the host device
count, and chaotic training amplifies last-bit differences).

Multi-host: every process runs this loop (the same programs, on its own
devices); process 0 alone touches the workdir (lock, checkpoints, outputs)
and broadcasts what it reads (which cells are finished, restored
checkpoints) to the others, so the workdir need not be shared.
"""

from __future__ import annotations

import json
import logging as std_logging
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from credit import tasks as tasks_lib
from credit.sweeps import cells as cells_lib
from credit.sweeps import results, sharding
from credit.sweeps.checkpointing import CellCheckpointer, Restored
from credit.training import divergence, outputs
from credit.training.lock import WorkdirInUseError, WorkdirLock
from credit.training.run import DivergenceNotes, HeapTrimmer, format_seconds, headline
from credit.training.train import dtype_of, make_trainer

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils


class SweepResult(NamedTuple):
  """The cells, which of them ran in this invocation, the output paths and wall time."""

  cells: tuple[cells_lib.Cell, ...]
  ran: tuple[str, ...]
  paths: dict[str, str]
  wall_time_s: float


# ---------------------------------------------------------------- processes


def is_primary() -> bool:
  return jax.process_index() == 0


def _broadcast(tree: Any) -> Any:
  """Process 0's ``tree`` on every process (a no-op in a single process)."""
  if jax.process_count() == 1:
    return tree
  return multihost_utils.broadcast_one_to_all(tree)


def _broadcast_json(obj: Any) -> Any:
  """Process 0's JSON-serializable ``obj`` on every process."""
  if jax.process_count() == 1:
    return obj
  data = json.dumps(obj).encode() if is_primary() else b""
  size = int(_broadcast(np.int64(len(data))))
  buf = np.zeros(size, np.uint8)
  if is_primary():
    buf[:] = np.frombuffer(data, np.uint8)
  return json.loads(bytes(np.asarray(_broadcast(buf))).decode())


def quiet_orbax_logs() -> None:
  """Drops orbax's INFO lines (a dozen per save) from absl logging; warnings stay."""

  class _DropOrbaxInfo(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
      return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname

  logger = std_logging.getLogger("absl")
  if not any(type(f).__name__ == "_DropOrbaxInfo" for f in logger.filters):
    logger.addFilter(_DropOrbaxInfo())


# ------------------------------------------------------------------ progress


class SweepProgress:
  """One line per evaluation with the cell's and the whole sweep's ETA.

  Rates are measured on chunks after each cell's first (which includes
  compilation); a cell's own ETA uses its own rate. The sweep's ETA adds, for
  each cell still to run, the rate measured on cells of the same task and rule
  (rules differ several-fold in cost per step: e-prop's steps are a quarter of
  BPTT's) plus the mean per-cell start-up time; cells of a task and rule not
  timed yet are counted and said so (``+ 1 cell not timed yet``), not guessed. The sweep's
  elapsed time counts from ``start`` (a ``time.perf_counter()`` value, e.g. the
  process start; default: now), a cell's from ``start_cell``'s ``started``
  (before its data is loaded). A seed that diverges gets a line of its own.
  """

  def __init__(
    self,
    remaining_steps: dict[str, int],
    stream=None,
    enabled: bool = True,
    start: float | None = None,
  ):
    self.remaining = dict(remaining_steps)  # cell id -> steps still to run
    self.stream = (stream or sys.stdout) if enabled else open(os.devnull, "w")  # noqa: SIM115
    self.start = time.perf_counter() if start is None else start
    self.rates: dict[tuple[str, str], tuple[int, float]] = {}  # (task, rule) -> steps, s
    self.startups: list[float] = []

  def start_cell(
    self,
    index: int,
    total: int,
    cell: cells_lib.Cell,
    first_step: int,
    started: float | None = None,
  ) -> None:
    self.cell = cell
    self.label = f"[{index}/{total} {cell.id}]"
    self.cell_start = time.perf_counter() if started is None else started
    self.last = (time.perf_counter(), first_step)
    self.divergence = DivergenceNotes()
    self.first_chunk_done = False
    self.cell_timed = (0, 0.0)
    self.remaining[cell.id] = cell.config.num_steps - first_step

  def note(self, message: str) -> None:
    print(f"{self.label} {message}", file=self.stream, flush=True)

  def update(self, step: int, metrics: dict[str, np.ndarray]) -> None:
    now = time.perf_counter()
    t0, s0 = self.last
    if step > s0:
      if self.first_chunk_done:
        kind = (self.cell.task, self.cell.rule)
        n, s = self.rates.get(kind, (0, 0.0))
        self.rates[kind] = (n + step - s0, s + now - t0)
        n, s = self.cell_timed
        self.cell_timed = (n + step - s0, s + now - t0)
      else:
        self.first_chunk_done = True
        self.startups.append(now - self.cell_start)
      self.remaining[self.cell.id] -= step - s0
    self.last = (now, step)
    total = self.cell.config.num_steps
    n, s = self.cell_timed
    cell_eta = s / n * self.remaining[self.cell.id] if n else math.nan
    pending = [k for k, v in self.remaining.items() if v > 0 and k != self.cell.id]
    startup = float(np.mean(self.startups)) if self.startups else 0.0
    own = cell_eta if n else self._rate(self.cell.id) * self.remaining[self.cell.id]
    sweep_eta, untimed = (0.0, 1) if math.isnan(own) else (own, 0)
    for cell_id in pending:
      rate = self._rate(cell_id)
      if math.isnan(rate):
        untimed += 1
      else:
        sweep_eta += rate * self.remaining[cell_id] + startup
    eta = format_seconds(sweep_eta) if untimed <= len(pending) else "--"  # all untimed: --
    if untimed:
      eta += f" + {untimed} cell{'s' if untimed > 1 else ''} not timed yet"
    print(
      f"{self.label} step {step}/{total} ({100 * step / max(total, 1):.0f}%) | cell "
      f"{format_seconds(now - self.cell_start)}, ETA {format_seconds(cell_eta)} | sweep "
      f"{format_seconds(now - self.start)}, ETA {eta} | "
      f"{headline(metrics)}",
      file=self.stream,
      flush=True,
    )
    for note in self.divergence.update(step, metrics):
      self.note(note)

  def _rate(self, cell_id: str) -> float:
    """Seconds per step measured on cells of ``cell_id``'s task and rule (NaN: none yet)."""
    task, rule = cell_id.split("-")[:2]  # <task>-<rule>-lr<lr>: names hold no "-"
    n, s = self.rates.get((task, rule), (0, 0.0))
    return s / n if n else math.nan

  def end_cell(self) -> None:
    self.remaining[self.cell.id] = 0


# ---------------------------------------------------------------------- cells


class _TaskCache:
  """Builds each task once per sweep: cells of one task share its data."""

  def __init__(self):
    self.tasks: dict[str, tasks_lib.Task] = {}

  def get(self, config: ml_collections.ConfigDict) -> tasks_lib.Task:
    key = json.dumps(
      [config.task, config.task_options.to_dict(), config.get("dtype", "float32")],
      sort_keys=True,
      default=str,
    )
    if key not in self.tasks:
      self.tasks[key] = tasks_lib.make(config.task, config.task_options, dtype_of(config))
    return self.tasks[key]


def _empty_history(fns: sharding.ShardedSeeds, num_evals: int) -> dict[str, np.ndarray]:
  def empty(s):
    dtype = np.dtype(s.dtype)
    fill = np.nan if np.issubdtype(dtype, np.floating) else 0
    return np.full(s.shape + (num_evals,), fill, dtype)

  return {k: empty(s) for k, s in fns.metric_shapes.items()}


def _host_template(fns: sharding.ShardedSeeds):
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fns.state_shapes)


def run_cell(
  cell: cells_lib.Cell,
  workdir: str,
  mesh: jax.sharding.Mesh,
  checkpoint_every: int,
  progress: SweepProgress,
  task_cache: _TaskCache | None = None,
  position: tuple[int, int] = (1, 1),
) -> None:
  """Runs (or resumes) one cell to the end and writes its outputs.

  ``position`` is ``(index, number of cells)``, for progress lines.
  """
  start = time.perf_counter()
  config = cell.config
  task = (task_cache or _TaskCache()).get(config)
  trainer = make_trainer(config, task=task)
  fns = sharding.compile_sharded(trainer, config, mesh)
  steps = trainer.eval_steps
  history = _empty_history(fns, len(steps))
  template = _host_template(fns)

  checkpointer = None
  restored: Restored | None = None
  if is_primary():
    checkpointer = CellCheckpointer(
      results.cell_dir(workdir, cell),
      active_processes={0} if jax.process_count() > 1 else None,
    )
    restored = checkpointer.restore_latest(template, history)
  found = _broadcast_json(None if restored is None else restored.num_evals)
  if found is not None:
    restored_state = _broadcast(restored.state if restored else template)
    restored_history = _broadcast(restored.history if restored else history)
    state = fns.put(restored_state)
    history = {k: np.array(v) for k, v in restored_history.items()}
    first = int(found)
  else:
    state = fns.init()
    first = 0
  resumed_from = steps[first - 1] if first else None
  progress.start_cell(*position, cell, resumed_from or 0, started=start)
  if resumed_from is not None:
    progress.note(f"resuming from the checkpoint at step {resumed_from}")
  progress.note(
    f"{config.num_seeds} seeds on {mesh.size} device(s)"
    + (f" (padded to {fns.padded})" if fns.padded != config.num_seeds else "")
    + f"; data and program ready in {format_seconds(time.perf_counter() - start)}, the "
    "first line below includes compilation"
  )

  last_saved = resumed_from or 0
  previous = resumed_from or 0
  trimmer = HeapTrimmer()
  try:
    for j in range(first, len(steps)):
      step = steps[j]
      if step > previous:
        state = fns.run_chunk(state, step - previous)
        trimmer.after(("chunk", step - previous))
        previous = step
      state, metrics = divergence.after_evaluation(state, fns.evaluate(state, step))
      metrics = fns.to_host(metrics)
      trimmer.after("evaluate")
      for name, value in metrics.items():
        history[name][:, j] = value
      progress.update(step, metrics)
      final = j == len(steps) - 1
      due = checkpoint_every and step // checkpoint_every > last_saved // checkpoint_every
      if final or due:
        state_host = fns.to_host(state)
        if checkpointer is not None:
          checkpointer.save(step, j + 1, state_host, history)
        last_saved = step
    if checkpointer is not None:
      checkpointer.wait()
  finally:
    if checkpointer is not None:
      checkpointer.close()
  progress.end_cell()
  if is_primary():
    results.write_cell(
      workdir,
      cell,
      history,
      {
        "cell_id": cell.id,
        "task": cell.task,
        "rule": cell.rule,
        "learning_rate": cell.learning_rate,
        "objective": trainer.task.objective,
        "devices": mesh.size,
        "processes": jax.process_count(),
        "padded_seeds": fns.padded,
        "resumed_from_step": resumed_from,
        "wall_time_s": time.perf_counter() - start,
      },
    )


# ---------------------------------------------------------------------- sweep


def run_sweep(
  sweep: ml_collections.ConfigDict,
  workdir: str,
  num_devices: int | None = None,
  stream=None,
  started: float | None = None,
) -> SweepResult:
  """Runs every unfinished cell of ``sweep`` in ``workdir`` and writes the tables.

  Args:
    sweep: a sweep config (see :mod:`credit.sweeps.cells`).
    workdir: the sweep's folder; re-running on it resumes.
    num_devices: use the first ``num_devices`` devices (default: all).
    stream: where progress lines go (default: stdout).
    started: the ``time.perf_counter()`` at which the job began (e.g. the
      launcher's process start), for the sweep's elapsed time; default: now.

  Returns:
    A :class:`SweepResult`.

  Raises:
    WorkdirInUseError: another live sweep holds ``workdir``.
    WorkdirError: ``workdir`` is a file or not writable, or a cell in it was
      started with another config (nothing is written then).
    ConfigError: an invalid sweep (found before anything runs).
  """
  start = time.perf_counter()
  cells = cells_lib.expand(sweep)
  workdir = os.path.abspath(workdir)
  if is_primary():
    outputs.check_workdir(workdir)
  mesh = sharding.make_mesh(num_devices)
  lock = WorkdirLock(workdir)
  refusal = None
  if is_primary():
    try:
      lock.acquire()
    except WorkdirInUseError as err:
      refusal = str(err)
  refusal = _broadcast_json(refusal)
  if refusal is not None:
    raise WorkdirInUseError(refusal)
  try:
    if is_primary():
      # Every cell is checked before anything is written: a refused sweep leaves the
      # workdir (sweep.json included) as it was.
      for cell in cells:
        results.check_cell_config(workdir, cell)
      # Whole or not at all, and not at all when unchanged (a rerun of a finished job).
      outputs.write_atomically(
        os.path.join(workdir, "sweep.json"), sweep.to_json_best_effort(indent=2)
      )
      for cell in cells:
        results.write_cell_config(workdir, cell)
    finished = _broadcast_json([results.is_finished(workdir, c) for c in cells])
    progress = SweepProgress(
      {c.id: 0 if done else c.config.num_steps for c, done in zip(cells, finished, strict=True)},
      stream,
      enabled=is_primary(),  # one set of progress lines, not one per host
      start=start if started is None else started,
    )
    task_cache = _TaskCache()
    ran = []
    for i, (cell, done) in enumerate(zip(cells, finished, strict=True), start=1):
      if done:
        print(
          f"[{i}/{len(cells)} {cell.id}] finished before; skipped", file=progress.stream, flush=True
        )
        continue
      run_cell(cell, workdir, mesh, sweep.checkpoint_every, progress, task_cache, (i, len(cells)))
      ran.append(cell.id)
      if is_primary():  # the tables so far, for a look at a long sweep while it runs
        results.write_results(workdir, cells)
    paths = results.write_results(workdir, cells) if is_primary() else {}
  finally:
    if is_primary():
      lock.release()
  wall = time.perf_counter() - start
  logging.info("sweep %s: %d cells (%d run now) in %.1fs", sweep.name, len(cells), len(ran), wall)
  return SweepResult(cells=cells, ran=tuple(ran), paths=paths, wall_time_s=wall)


def describe(cells: Sequence[cells_lib.Cell]) -> str:
  """One line per cell: id, steps, evaluation interval, seeds."""
  return "\n".join(
    f"{c.id}: {c.config.num_steps} steps, eval every {c.config.eval_every}, "
    f"{c.config.num_seeds} seeds"
    for c in cells
  )
