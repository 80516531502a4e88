r"""Spike encodings of real-valued task inputs, as pure functions, and a task wrapper.

* :func:`poisson_spikes`: each channel spikes with probability
  :math:`p_{max} \cdot \mathrm{clip}(x, 0, 1)` per step (a Bernoulli-binned
  Poisson process; ``p_max = rate * dt``).
* :func:`threshold_crossings`: for each channel ``c`` and level
  :math:`\theta_l`, an "up" spike at step ``t`` when
  :math:`x_{t-1,c} < \theta_l \le x_{t,c}` and a "down" spike when
  :math:`x_{t-1,c} \ge \theta_l > x_{t,c}` (with :math:`x_0 = 0`): deterministic,
  ``2 L`` channels per input channel. For row-wise sequential MNIST a column's
  pixel value crossing a level as the rows go by is the event (the
  threshold-crossing encoding of spiking seq-MNIST benchmarks).

:func:`encode_task` applies an :class:`Encoding` to a task's training sampler
(a fresh key per batch) and to its evaluation sets (one fixed key, so that the
evaluation sets stay fixed). Tasks whose inputs are already spikes (evidence
accumulation's Poisson cues) need no encoding.

**As task options** (:func:`default_options`, added to ``task_options`` of a
spiking config by :func:`credit.training.config.base_config`):
``spike_encoding`` (``"none"``, ``"poisson"`` or ``"threshold"``),
``spike_p_max`` (Poisson: spike probability of a value of 1 per step) and
``spike_levels`` (threshold crossings: the levels). :func:`credit.tasks.make`
encodes the task it builds when ``spike_encoding`` is not ``"none"``; the test
split is encoded after its shift (e.g. seq-MNIST's pixel noise), so the shift
reaches the network as spikes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from credit.tasks.base import EVAL_SPLITS, Batch, Task

import jax
import jax.numpy as jnp
import ml_collections

ENCODINGS = ("none", "poisson", "threshold")


def poisson_spikes(key: jax.Array, x: jax.Array, p_max: float) -> jax.Array:
  """Bernoulli spikes with probability ``p_max * clip(x, 0, 1)``, same shape and dtype as ``x``."""
  if not 0.0 < p_max <= 1.0:
    raise ValueError(f"p_max (rate * dt) must be in (0, 1], got {p_max!r}")
  p = p_max * jnp.clip(x, 0.0, 1.0)
  return jax.random.bernoulli(key, p).astype(x.dtype)


def threshold_crossings(x: jax.Array, levels: Sequence[float]) -> jax.Array:
  """Up and down crossings of each level along time: ``[B, T, C] -> [B, T, 2 L C]``.

  Channel order: ``[up(level 0) .. up(level L-1), down(level 0) .. down(level L-1)]``,
  each block ``C`` wide.
  """
  if len(levels) == 0:
    raise ValueError("threshold_crossings needs at least one level")
  lv = jnp.asarray(levels, x.dtype)[:, None, None, None]  # [L, 1, 1, 1]
  prev = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
  up = (prev < lv) & (x >= lv)
  down = (prev >= lv) & (x < lv)
  spikes = jnp.concatenate([up, down], axis=0).astype(x.dtype)  # [2L, B, T, C]
  return jnp.moveaxis(spikes, 0, 2).reshape(x.shape[:2] + (-1,))


class Encoding(NamedTuple):
  """A spike encoding of task inputs.

  Attributes:
    name: what it is, for configs and logs.
    n_channels: ``n_in -> number of encoded channels``.
    encode: ``(key, inputs [B, T, n_in]) -> spikes [B, T, n_channels(n_in)]``.
  """

  name: str
  n_channels: Callable[[int], int]
  encode: Callable[[jax.Array, jax.Array], jax.Array]


def poisson_encoding(p_max: float) -> Encoding:
  return Encoding(
    name=f"poisson(p_max={p_max})",
    n_channels=lambda n: n,
    encode=lambda key, x: poisson_spikes(key, x, p_max),
  )


def threshold_encoding(levels: Sequence[float]) -> Encoding:
  levels = tuple(float(v) for v in levels)
  return Encoding(
    name=f"threshold_crossings(levels={levels})",
    n_channels=lambda n: 2 * len(levels) * n,
    encode=lambda key, x: threshold_crossings(x, levels),
  )


def encode_task(task: Task, encoding: Encoding, eval_key: jax.Array | None = None) -> Task:
  """``task`` with spike-encoded inputs (targets, masks and everything else unchanged).

  Args:
    task: the task.
    encoding: the spike encoding.
    eval_key: key of the evaluation sets' encoding (a fixed default when omitted).

  Returns:
    The encoded :class:`~credit.tasks.base.Task` (``n_in`` updated).
  """
  if eval_key is None:
    eval_key = jax.random.key(0x5B1E)

  def encoded(batch: Batch, key: jax.Array) -> Batch:
    return batch._replace(inputs=encoding.encode(key, batch.inputs))

  def wrap(sample):
    if sample is None:
      return None

    def sample_encoded(key: jax.Array, batch_size: int) -> Batch:
      k_sample, k_encode = jax.random.split(key)
      return encoded(sample(k_sample, batch_size), k_encode)

    return sample_encoded

  # The splits every task has keep the indices they had before the single-factor shift
  # sets existed (sorted among themselves); any other split comes after them.
  order = sorted(task.eval_sets, key=lambda split: (split not in EVAL_SPLITS, split))
  eval_sets = {
    split: encoded(task.eval_sets[split], jax.random.fold_in(eval_key, i))
    for i, split in enumerate(order)
  }
  return task._replace(
    name=f"{task.name}+{encoding.name}",
    n_in=encoding.n_channels(task.n_in),
    sample_train=wrap(task.sample_train),
    sample_test=wrap(task.sample_test),
    eval_sets=eval_sets,
  )


def default_options() -> ml_collections.ConfigDict:
  """The spike-encoding task options (off by default)."""
  return ml_collections.ConfigDict(
    dict(spike_encoding="none", spike_p_max=1.0, spike_levels=(0.5,))
  )


def validate_options(options: ml_collections.ConfigDict) -> None:
  """Checks the spike-encoding fields of ``options`` (absent fields: off)."""
  name = options.get("spike_encoding", "none")
  if name not in ENCODINGS:
    raise ValueError(f"task_options.spike_encoding must be one of {ENCODINGS}, got {name!r}")
  if name == "poisson" and not 0.0 < options.spike_p_max <= 1.0:
    raise ValueError(f"task_options.spike_p_max must be in (0, 1], got {options.spike_p_max!r}")
  if name == "threshold":
    levels = tuple(options.spike_levels)
    if not levels or len(set(levels)) != len(levels):
      raise ValueError(
        f"task_options.spike_levels must be a non-empty tuple of distinct levels, got {levels!r}"
      )


def from_options(options: ml_collections.ConfigDict) -> Encoding | None:
  """The :class:`Encoding` the task options ask for (``None``: inputs unchanged)."""
  validate_options(options)
  name = options.get("spike_encoding", "none")
  if name == "poisson":
    return poisson_encoding(float(options.spike_p_max))
  if name == "threshold":
    return threshold_encoding(tuple(options.spike_levels))
  return None
