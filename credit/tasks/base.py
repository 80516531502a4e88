"""The task interface shared by every task.

A task is a small record of static sizes plus pure functions. Batches follow
PsychRNN's (inputs, targets, mask) triple so that one masked loss serves
losses on the last step (sequential MNIST) and on decision windows alike.

Evaluation uses fixed sets (built once, from a fixed key or a fixed data split)
so that metrics along training are measured on the same examples each time:

* ``train``: a fixed sample of the training distribution;
* ``val``: held-out examples of the training distribution (curvature is
  measured here, as in the reference code);
* ``test``: the **shifted** test distribution (the generalization gap is
  ``train - test``);
* ``test_clean``: held-out examples of the training distribution at test size;
* optionally (:data:`SHIFT_SPLITS`; delayed match and evidence accumulation, whose
  shift has two factors), ``test_delay`` (the test delays, training's noise) and
  ``test_noise`` (training's delays, the test noise): each shifted in one factor, so
  that a gap can be attributed; ``test`` stays the shift in both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from credit import losses

import jax
import jax.numpy as jnp
import numpy as np

EVAL_SPLITS = ("train", "val", "test", "test_clean")
SHIFT_SPLITS = ("test_delay", "test_noise")


class Batch(NamedTuple):
  """Inputs ``[B, T, N_in]``, targets ``[B, T, N_out]``, loss mask ``[B, T]``."""

  inputs: jax.Array
  targets: jax.Array
  mask: jax.Array


class TaskShape(NamedTuple):
  """What validation needs to know of a task before its data exist (see ``tasks.shape``).

  Attributes:
    n_in, n_out: input and output channels of the built task.
    train_size: training examples of a fixed dataset (``None`` for generators).
    val_size: examples in the fixed validation set (the probes' batches come from it).
  """

  n_in: int
  n_out: int
  train_size: int | None
  val_size: int


class Task(NamedTuple):
  """A supervised sequence task.

  Attributes:
    name: registry name.
    n_in, n_out, n_steps: input channels, output channels, sequence length.
    objective: ``"xent"`` (classification, score = accuracy) or ``"mse"``
      (regression, score = R^2).
    sample_train: ``(key, batch_size) -> Batch``, pure and jit-able.
    eval_sets: fixed evaluation batches keyed by :data:`EVAL_SPLITS` (and, for
      tasks whose shift has two factors, :data:`SHIFT_SPLITS`).
    shift: a sentence describing how ``test`` differs from training.
    sample_test: ``(key, batch_size) -> Batch`` from the shifted test
      distribution (for tasks that can generate; ``None`` for fixed datasets).
    train_size: number of training examples of a fixed dataset (``None`` for
      generators, whose training distribution is unbounded).
    loss_steps: the only steps at which the loss mask can be non-zero, when the
      task fixes them (sequential MNIST: the last one); ``None``: any step.
      Rules may use it to skip steps that carry no credit.
  """

  name: str
  n_in: int
  n_out: int
  n_steps: int
  objective: str
  sample_train: Callable[[jax.Array, int], Batch]
  eval_sets: dict[str, Batch]
  shift: str
  sample_test: Callable[[jax.Array, int], Batch] | None = None
  train_size: int | None = None
  loss_steps: tuple[int, ...] | None = None

  def loss(self, y: jax.Array, batch: Batch) -> jax.Array:
    """Data loss of outputs ``y [B, T, N_out]`` (no regularizer)."""
    return losses.loss_fn(self.objective)(y, batch.targets, batch.mask)

  def score(self, y: jax.Array, batch: Batch) -> jax.Array:
    """Accuracy (classification) or R^2 (regression)."""
    return losses.score_fn(self.objective)(y, batch.targets, batch.mask)


def one_hot_at_steps(labels: jax.Array, n_classes: int, mask: jax.Array, dtype=jnp.float32):
  """One-hot targets ``[B, T, K]`` equal to ``labels [B]`` at every step (mask selects)."""
  onehot = jax.nn.one_hot(labels, n_classes, dtype=dtype)
  return jnp.broadcast_to(onehot[:, None, :], mask.shape + (n_classes,))


def validation_batch(task: Task, batch_size: int, field: str) -> Batch:
  """The first ``batch_size`` validation examples: the fixed batch probes measure on.

  Args:
    task: the task.
    batch_size: number of examples.
    field: the config field that asked for it, named in the error.

  Raises:
    ValueError: when ``batch_size`` is not between 1 and the validation set's size.
  """
  val = task.eval_sets["val"]
  n = val.inputs.shape[0]
  if not 1 <= batch_size <= n:
    raise ValueError(f"{field}={batch_size} must be between 1 and the {n} validation examples")
  return Batch(*(x[:batch_size] for x in val))


def take(batch: Batch, idx: jax.Array) -> Batch:
  """Sub-batch by example indices."""
  return Batch(*(x[idx] for x in batch))


def batch_at_steps(batch: Batch, steps: tuple[int, ...] | None) -> Batch:
  """Targets and mask at ``steps`` only (``[B, len(steps), ...]``; the batch for ``None``).

  Losses and scores are masked means over steps, so on a task whose mask is zero
  off ``steps`` (``Task.loss_steps``) they give the same values on readouts taken
  at those steps only. The inputs keep every step: the network runs through all.
  """
  if steps is None:
    return batch
  idx = np.asarray(steps, np.int32)
  return Batch(batch.inputs, batch.targets[:, idx], batch.mask[:, idx])
