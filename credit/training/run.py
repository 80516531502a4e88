"""The host-side driver behind ``experiments/train.py``.

It runs the same pure pieces as :func:`credit.training.train.make_train`
(init, ``eval_every``-step chunks, evaluation), each compiled once and
vmapped over seeds, but returns to the host between chunks to print progress
with an ETA and to write ``metrics.csv`` as it goes. The results equal those of
``jax.jit(jax.vmap(train))(keys)``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from credit import runtime
from credit.analysis.stats import checked_for_divergence
from credit.training import config as config_lib
from credit.training import divergence, outputs
from credit.training.seeds import over_seeds
from credit.training.train import Metrics, Trainer, TrainState, make_trainer

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


class RunResult(NamedTuple):
  """Final states (stacked over seeds), the metric history and the seeds' ids."""

  state: TrainState
  history: dict[str, np.ndarray]  # name -> [num_seeds, num_evals]
  seeds: tuple[int, ...]
  wall_time_s: float


def seed_keys(config: ml_collections.ConfigDict) -> jax.Array:
  """One key per seed; seed ``i`` of a run is ``split(key(config.seed), num_seeds)[i]``."""
  return jax.random.split(jax.random.key(config.seed), config.num_seeds)


class HeapTrimmer:
  """Calls :func:`credit.runtime.trim_heap` after the first call of each program.

  ``after(key)`` after a call: the first time a key (a program, e.g. a chunk
  length) is seen, its compile has just freed its memory, and glibc gives the
  free pages back (credit.runtime, item 3); later calls cost nothing.
  """

  def __init__(self):
    self.seen: set = set()

  def after(self, key) -> None:
    if key not in self.seen:
      self.seen.add(key)
      runtime.trim_heap()


class CompiledSeeds(NamedTuple):
  """A trainer's pieces, jitted over the seed axis (laid out as ``trainer.seed_layout``)."""

  init: Callable[[jax.Array], TrainState]
  run_chunk: Callable[[TrainState, int], TrainState]
  evaluate: Callable[[TrainState, jax.Array], Metrics]


def compile_seeds(trainer: Trainer) -> CompiledSeeds:
  layout = trainer.seed_layout
  return CompiledSeeds(
    init=jax.jit(jax.vmap(trainer.init)),
    run_chunk=jax.jit(over_seeds(trainer.run_chunk, layout), static_argnums=1),
    evaluate=jax.jit(over_seeds(trainer.evaluate, layout)),
  )


def format_seconds(s: float) -> str:
  """``42s``, ``3.5min`` or ``2.1h``; ``--`` when unknown (NaN)."""
  if not np.isfinite(s):
    return "--"
  s = max(0.0, s)
  if s < 90:
    return f"{s:.0f}s"
  if s < 5400:
    return f"{s / 60:.1f}min"
  return f"{s / 3600:.1f}h"


def headline(metrics: Metrics) -> str:
  """``val_acc`` and ``gap_acc`` averaged over the seeds still training, and the diverged count.

  A diverged seed is left out of the means: its frozen parameters give meaningless metrics.
  """
  alive = ~np.asarray(metrics["diverged"], bool).reshape(-1)
  acc = np.asarray(metrics["val_acc"], float).reshape(-1)
  gap = np.asarray(metrics["gap_acc"], float).reshape(-1)
  if alive.any():
    acc, gap = acc[alive], gap[alive]
  return (
    f"val_acc {np.nanmean(acc):.3f} gap_acc {np.nanmean(gap):+.3f} | "
    f"diverged {int(np.sum(~alive))}/{alive.size}"
  )


# Said once per run, when a seed diverges before its first evaluation after the start. Only
# what was measured: when. Why is not measured (the same seeds can diverge under one rule
# and not another, e.g. UORO's estimate against BPTT's gradient from the same weights).
EARLY_DIVERGENCE_HINT = (
  "it diverged within its first {steps} training steps, after a finite evaluation at step 0; "
  "what made it diverge was not measured (seed i starts from the same weights under every "
  "rule: the same seed under another rule tells whether they alone are the cause)"
)


class DivergenceNotes:
  """Lines that say which seeds diverged since the last evaluation, and why.

  A diverged seed is frozen and left out of the progress line's means; these
  lines say so where the user sees it, once per seed.
  """

  def __init__(self):
    self.seen: np.ndarray | None = None
    self.first_step: int | None = None  # the first evaluation after step 0
    self.hinted = False

  def update(self, step: int, metrics: Metrics) -> list[str]:
    diverged = np.asarray(metrics["diverged"], bool).reshape(-1)
    if self.seen is None:
      self.seen = np.zeros_like(diverged)
    if self.first_step is None and step > 0:
      self.first_step = step
    lines = []
    for seed in np.flatnonzero(diverged & ~self.seen):
      bad = [
        name
        for name, value in metrics.items()
        if checked_for_divergence(name)
        and not math.isfinite(float(np.asarray(value, float).reshape(-1)[seed]))
      ]
      why = (
        f"non-finite {', '.join(sorted(bad))}"
        if bad
        else "training loss non-finite or above max_loss"
      )
      line = (
        f"seed {seed} diverged by step {step} ({why}): it is frozen and left out of the "
        "means from here on"
      )
      if 0 < step <= (self.first_step or 0) and not self.hinted:
        line += f"; {EARLY_DIVERGENCE_HINT.format(steps=step)}"
        self.hinted = True
      lines.append(line + ".")
    self.seen = self.seen | diverged
    return lines


class Progress:
  """One line per evaluation: step, elapsed time, ETA and the headline metrics.

  The ETA uses the time per step measured after the first chunk, so that
  compilation does not inflate it. Elapsed time counts from ``start`` (a
  ``time.perf_counter()`` value; default: now), so a launcher can include the
  time spent loading data and building the program. A seed that diverges gets
  a line of its own (:class:`DivergenceNotes`).
  """

  def __init__(self, total_steps: int, label: str = "", stream=None, start: float | None = None):
    self.total = total_steps
    self.label = label
    self.stream = stream or sys.stdout
    self.start = time.perf_counter() if start is None else start
    self.after_first: tuple[float, int] | None = None
    self.divergence = DivergenceNotes()

  def note(self, message: str) -> None:
    print(f"{self.label}{message}", file=self.stream, flush=True)

  def update(self, step: int, metrics: Metrics) -> str:
    now = time.perf_counter()
    if self.after_first is None and step > 0:
      self.after_first = (now, step)
      eta = float("nan")
    elif self.after_first is not None and step > self.after_first[1]:
      t0, s0 = self.after_first
      eta = (now - t0) / (step - s0) * (self.total - step)
    else:
      eta = float("nan")
    line = (
      f"{self.label}step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%) | "
      f"{format_seconds(now - self.start)} elapsed, ETA {format_seconds(eta)} | "
      f"{headline(metrics)}"
    )
    print(line, file=self.stream, flush=True)
    for note in self.divergence.update(step, metrics):
      self.note(note)
    return line


def run_seeds(
  trainer: Trainer,
  keys: jax.Array,
  progress: Progress | None = None,
  compiled: CompiledSeeds | None = None,
  on_evaluation: Callable[[int, Metrics], None] | None = None,
) -> tuple[TrainState, dict[str, np.ndarray]]:
  """Trains all seeds together, evaluating at ``trainer.eval_steps``.

  After each evaluation, seeds with a non-finite metric are marked diverged
  (:func:`credit.training.divergence.after_evaluation`), then
  ``on_evaluation(step, host metrics)`` runs (e.g. appending to ``metrics.csv``).
  """
  fns = compiled or compile_seeds(trainer)
  state = fns.init(keys)
  history: list[Metrics] = []
  previous = 0
  trimmer = HeapTrimmer()
  for step in trainer.eval_steps:
    if step > previous:
      state = fns.run_chunk(state, step - previous)
      trimmer.after(("chunk", step - previous))
      previous = step
    state, metrics = divergence.after_evaluation(
      state, fns.evaluate(state, jnp.asarray(step, jnp.int32))
    )
    metrics = jax.device_get(metrics)
    trimmer.after("evaluate")
    history.append(metrics)
    if on_evaluation is not None:
      on_evaluation(step, metrics)
    if progress is not None:
      progress.update(step, metrics)
  stacked = {k: np.stack([np.asarray(m[k]) for m in history], axis=1) for k in history[0]}
  return state, stacked


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str | None,
  overwrite: bool = False,
  started: float | None = None,
) -> RunResult | None:
  """Trains ``config.num_seeds`` seeds of one config, writing the run's files as it goes.

  The config is validated and the workdir checked (and locked: a second run on
  it is refused) before any data is loaded or anything compiled; ``config.json``
  is written first, ``metrics.csv`` grows at each evaluation and ``summary.json``
  comes last (:class:`credit.training.outputs.RunWriter`). A run this one
  replaces is kept until this one has written its first evaluation.

  Args:
    config: a run config (see ``configs/``).
    workdir: where ``config.json``, ``metrics.csv`` and ``summary.json`` go;
      ``None`` writes nothing.
    overwrite: replace a run already in ``workdir``; without it a finished run
      of the same config is left as it is (returns ``None``) and a run of
      another config is refused.
    started: the ``time.perf_counter()`` at which the job began (e.g. the
      launcher's process start), so that progress lines count the loading
      time too; default: now.

  Returns:
    A :class:`RunResult`, or ``None`` when ``workdir`` already holds this
    run, finished.

  Raises:
    ConfigError: an invalid config.
    WorkdirError: an unusable workdir, or one holding another run.
  """
  start = time.perf_counter() if started is None else started
  config_lib.validate(config)
  seeds = tuple(range(config.num_seeds))
  writer = None
  if workdir is not None:
    writer = outputs.RunWriter(workdir, config, seeds)
    if not writer.start(overwrite):
      print(
        f"{writer.workdir} already holds this run, finished, with the same config: nothing "
        "to do (pass --overwrite to run it again).",
        flush=True,
      )
      return None
  try:
    trainer = make_trainer(config)
    progress = Progress(config.num_steps, label=f"[{config.task}/{config.rule}] ", start=start)
    progress.note(
      f"data loaded and program built ({format_seconds(time.perf_counter() - start)} since "
      f"start); the first line below includes compilation"
    )
    on_evaluation = (lambda step, metrics: writer.append(metrics)) if writer else None
    state, history = run_seeds(trainer, seed_keys(config), progress, on_evaluation=on_evaluation)
  except BaseException:
    if writer is not None:
      writer.abandon()  # a run replaced by this one comes back if this one wrote nothing
    raise
  if writer is not None:
    writer.finish(history)
  wall = time.perf_counter() - start
  return RunResult(state=state, history=history, seeds=seeds, wall_time_s=wall)
