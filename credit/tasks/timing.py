"""Shared pieces of the trial generators: timing in ms, period masks, spikes, input noise.

Every generator describes time in milliseconds and converts to steps of ``dt``
ms once, at build time, so that a task's sequence length and windows are
static (Python ints) and only per-trial quantities (a delay, a cue side) are
traced arrays. Periods are rendered as vectorized masks over a time axis
(PsychRNN's per-step Python loop is the thing to avoid under ``jit``).

Conventions, each documented where it is implemented:

* durations must be whole multiples of ``dt`` (:func:`to_steps` checks);
* spikes are Bernoulli with probability ``rate * dt`` per step (a Poisson
  process binned at ``dt``, which needs ``rate * dt <= 1``);
* additive input noise follows neurogym exactly: standard deviation
  ``sigma / sqrt(dt)`` per step with ``dt`` in **milliseconds**.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def to_steps(duration_ms: float, dt: float, field: str = "duration") -> int:
  """A duration in ms as a whole number of steps of ``dt`` ms.

  Raises:
    ValueError: naming ``field`` when the duration is negative or not a
      multiple of ``dt`` (a silently rounded period would change the task).
  """
  steps = duration_ms / dt
  if duration_ms < 0 or not math.isclose(steps, round(steps), abs_tol=1e-9):
    raise ValueError(
      f"task_options.{field}={duration_ms} ms must be a non-negative multiple of dt={dt} ms"
    )
  return int(round(steps))


def window(start: jax.Array, length: jax.Array | int, n_steps: int) -> jax.Array:
  """Boolean mask ``[B, T]`` of the steps ``start <= t < start + length`` of each trial.

  Args:
    start: first step of the window per trial, ``[B]`` ints.
    length: window length in steps, a scalar or ``[B]``.
    n_steps: the sequence length ``T``.
  """
  t = jnp.arange(n_steps)[None, :]
  start = jnp.asarray(start)[:, None]
  stop = start + jnp.asarray(length).reshape(-1, 1)
  return (t >= start) & (t < stop)


def uniform_steps(key: jax.Array, batch_size: int, low_ms: float, high_ms: float, dt: float):
  """Durations uniform on the grid ``{low, low + dt, ..., high}`` ms, in steps, ``[B]`` ints."""
  low, high = round(low_ms / dt), round(high_ms / dt)
  return jax.random.randint(key, (batch_size,), low, high + 1)


def spike_probability(rate_hz: jax.Array | float, dt: float) -> jax.Array | float:
  """Probability of a spike in one step of ``dt`` ms at ``rate_hz`` (``rate * dt / 1000``)."""
  return rate_hz * (dt / 1000.0)


def poisson_spikes(key: jax.Array, rate_hz: jax.Array, dt: float, dtype=jnp.float32) -> jax.Array:
  """Binned Poisson spike trains: ``Bernoulli(rate * dt)`` per step, shaped like ``rate_hz``.

  Binning drops the (rare when ``rate * dt`` is small) second spike in a bin;
  callers validate ``rate * dt <= 1``.
  """
  p = jnp.clip(spike_probability(jnp.asarray(rate_hz), dt), 0.0, 1.0)
  return jax.random.bernoulli(key, p).astype(dtype)


def input_noise(key: jax.Array, shape, sigma: float, dt: float, dtype=jnp.float32) -> jax.Array:
  r"""Gaussian input noise with neurogym's scaling: std ``sigma / sqrt(dt)``, ``dt`` in ms.

  neurogym sets ``self.sigma = sigma / np.sqrt(self.dt)`` (``dt`` in ms) and
  adds ``sigma * randn`` to each observation. A unit with time constant
  :math:`\tau` integrates the input as :math:`(dt/\tau)\sum_t x_t`, so over a
  fixed duration :math:`D` the integrated noise has variance
  :math:`D\,\sigma^2/\tau^2` whatever ``dt`` is: ``sigma`` is a white-noise
  intensity (units of input times :math:`\sqrt{ms}`), comparable across ``dt``.
  """
  if sigma == 0:
    return jnp.zeros(shape, dtype)
  return (sigma / math.sqrt(dt)) * jax.random.normal(key, shape, dtype)


def reflect(t: jax.Array, n_steps: int) -> jax.Array:
  """Folds step indices back into ``[0, n_steps)`` by mirroring at both ends."""
  period = 2 * n_steps
  t = jnp.mod(t, period)
  return jnp.where(t >= n_steps, period - 1 - t, t)


def jitter_spikes(key: jax.Array, spikes: jax.Array, jitter_ms: float, dt: float) -> jax.Array:
  """Moves every spike of ``spikes [B, T, C]`` by an independent Gaussian time offset.

  Each spike moves by ``round(N(0, jitter_ms^2) / dt)`` steps; spikes pushed
  past either end are mirrored back in (:func:`reflect`), so that no spike is
  lost and the rate near the ends is kept. Spikes landing in the same bin add
  up (a bin can hold a count > 1), so every channel keeps its spike count
  exactly.
  """
  if jitter_ms == 0:
    return spikes
  b, t, c = spikes.shape
  shift = jnp.round(jax.random.normal(key, spikes.shape) * (jitter_ms / dt)).astype(jnp.int32)
  new_t = reflect(jnp.arange(t)[None, :, None] + shift, t)
  bi = jnp.broadcast_to(jnp.arange(b)[:, None, None], spikes.shape)
  ci = jnp.broadcast_to(jnp.arange(c)[None, None, :], spikes.shape)
  return jnp.zeros_like(spikes).at[bi, new_t, ci].add(spikes)


def eval_keys(eval_seed: int) -> dict[str, jax.Array]:
  """One fixed key per evaluation split, from the task option ``eval_seed``."""
  keys = jax.random.split(jax.random.key(eval_seed), 4)
  return dict(zip(("train", "val", "test", "test_clean"), keys, strict=True))


def build_eval_sets(keys: dict[str, jax.Array], size: int, sample_train, sample_test) -> dict:
  """The fixed evaluation batches: ``test`` from the shifted sampler, the rest from training's.

  Run eagerly: XLA takes seconds to compile a generator's unrolled threefry
  rounds, while eager ops compile once per shape and are reused by every task
  built in the process.
  """
  return {
    "train": sample_train(keys["train"], size),
    "val": sample_train(keys["val"], size),
    "test": sample_test(keys["test"], size),
    "test_clean": sample_train(keys["test_clean"], size),
  }


def shift_eval_sets(keys: dict[str, jax.Array], size: int, sample_delay, sample_noise) -> dict:
  """The single-factor shift sets: ``test_delay`` (longer delays only), ``test_noise`` (noise only).

  Each reuses a key of :func:`build_eval_sets`, so the sets come in pairs that
  differ in one factor only, trial by trial: ``test_delay`` draws the trials of
  ``test`` (same stimuli and delays, the same noise draws at training's std) and
  ``test_noise`` those of ``test_clean`` (same trials, the noise at test's std).
  So ``test_delay - test`` is the noise's effect at long delays and ``test_noise -
  test_clean`` at training's delays, without the sampling error of new trials.
  """
  return {
    "test_delay": sample_delay(keys["test"], size),
    "test_noise": sample_noise(keys["test_clean"], size),
  }
