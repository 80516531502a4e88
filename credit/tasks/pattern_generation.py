"""Pattern generation (e-prop, Bellec et al. 2020, ``tutorial_pattern_generation.py``).

A fixed ("frozen") input, 100 channels of Poisson spike trains at 50 Hz over
1000 ms, must be mapped to a fixed target: per output, a sum of 4 sinusoids
with periods 1000, 500, 333 and 200 ms, amplitudes ``U(0.5, 2)`` and phases
``U(0, 2 pi)``, rescaled to [0, 1]. Input spikes, amplitudes and phases are all
drawn once from ``pattern_seed``. Loss: MSE over every step (mask all ones);
score: R^2.

There is one training example: every element of a training batch is the same
frozen pattern, distinct only through the optional training input noise
(``sigma``; off by default, as in e-prop). So ``train``, ``val`` and
``test_clean`` are copies of the same trial (independent noise draws when
``sigma > 0``) and, with ``sigma = 0``, the train and validation scores are
equal: this task measures memorization of a trajectory and its robustness, not
generalization across trials.

Test shift: the same frozen input with every spike moved by an independent
Gaussian time jitter (``test_jitter_ms``; spike counts per channel kept, see
:func:`credit.tasks.timing.jitter_spikes`) and optional extra Gaussian input
noise (``test_sigma``, neurogym scaling ``sigma / sqrt(dt)``); each test
example is a different jitter and noise draw.
"""

from __future__ import annotations

from credit.tasks import timing
from credit.tasks.base import Batch, Task, TaskShape

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def default_options() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      dt=10.0,  # ms per step (e-prop uses 1 ms; 10 ms keeps T = 100)
      duration=1000.0,  # ms
      n_in=100,
      f_input=50.0,  # Hz, rate of the frozen Poisson inputs
      n_out=1,  # independent target patterns (e-prop's tutorial uses 3)
      periods=(1000.0, 500.0, 333.0, 200.0),  # ms, one sinusoid each
      amp_min=0.5,
      amp_max=2.0,
      pattern_seed=0,  # draws the frozen input, amplitudes and phases
      sigma=0.0,  # training input noise (neurogym scaling; 0 = the frozen input alone)
      test_jitter_ms=5.0,  # std of the Gaussian spike-time jitter of the test split
      test_sigma=0.0,  # input noise of the test split, added to the jittered input
      eval_size=256,  # copies of the pattern; probes take up to 256 validation examples
      eval_seed=0,
    )
  )


def validate(options: ml_collections.ConfigDict) -> None:
  o = options
  if not o.dt > 0:
    raise ValueError(f"task_options.dt must be > 0 (ms), got {o.dt}")
  n = timing.to_steps(o.duration, o.dt, "duration")
  if n < 2:
    raise ValueError(f"task_options.duration must span at least 2 steps of dt, got {o.duration}")
  for field in ("n_in", "n_out", "eval_size"):
    if not isinstance(o[field], int) or o[field] < 1:
      raise ValueError(f"task_options.{field} must be a positive integer, got {o[field]!r}")
  if not 0 < timing.spike_probability(o.f_input, o.dt) <= 1:
    raise ValueError(
      f"task_options.f_input must be in (0, 1000/dt] = (0, {1000 / o.dt:g}] Hz so that "
      f"rate*dt is a probability, got {o.f_input}"
    )
  if len(o.periods) < 1 or any(not p > 0 for p in o.periods):
    raise ValueError(
      f"task_options.periods must be a non-empty tuple of positive ms, got {tuple(o.periods)}"
    )
  if not 0 <= o.amp_min <= o.amp_max:
    raise ValueError(
      f"task_options.amp_min/amp_max must satisfy 0 <= amp_min <= amp_max, got "
      f"{o.amp_min}, {o.amp_max}"
    )
  for field in ("sigma", "test_jitter_ms", "test_sigma"):
    if o[field] < 0:
      raise ValueError(f"task_options.{field} must be >= 0, got {o[field]}")


def frozen_pattern(options: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """The frozen input spikes ``[T, n_in]`` and target ``[T, n_out]`` of ``pattern_seed``."""
  o = options
  n = timing.to_steps(o.duration, o.dt, "duration")
  k_in, k_amp, k_phase = jax.random.split(jax.random.key(o.pattern_seed), 3)
  spikes = timing.poisson_spikes(k_in, jnp.full((n, o.n_in), o.f_input), o.dt)
  n_sines = len(o.periods)
  amps = jax.random.uniform(k_amp, (o.n_out, n_sines), minval=o.amp_min, maxval=o.amp_max)
  phases = jax.random.uniform(k_phase, (o.n_out, n_sines), maxval=2 * np.pi)
  t_ms = np.arange(n) * o.dt
  periods = np.asarray(o.periods, np.float64)
  sines = np.asarray(amps)[:, :, None] * np.sin(
    2 * np.pi * t_ms[None, None, :] / periods[None, :, None] + np.asarray(phases)[:, :, None]
  )
  target = sines.sum(axis=1).T  # [T, n_out]
  # Rescaled to [0, 1] per output so that the readout bias and scale start in range.
  target = (target - target.min(0)) / np.maximum(target.max(0) - target.min(0), 1e-12)
  return np.asarray(spikes), target


def shape(options: ml_collections.ConfigDict) -> TaskShape:
  return TaskShape(
    int(options.n_in), int(options.n_out), train_size=None, val_size=int(options.eval_size)
  )


def make(options: ml_collections.ConfigDict, dtype=jnp.float32) -> Task:
  validate(options)
  o = ml_collections.FrozenConfigDict(options)  # the samplers close over it: no later edits
  dt = float(o.dt)
  spikes_np, target_np = frozen_pattern(o)
  n = spikes_np.shape[0]
  spikes = jnp.asarray(spikes_np, dtype)
  target = jnp.asarray(target_np, dtype)

  def _batch(inputs: jax.Array) -> Batch:
    b = inputs.shape[0]
    return Batch(
      inputs,
      jnp.broadcast_to(target, (b,) + target.shape),
      jnp.ones((b, n), dtype),
    )

  def sample_train(key: jax.Array, batch_size: int) -> Batch:
    x = jnp.broadcast_to(spikes, (batch_size,) + spikes.shape)
    return _batch(x + timing.input_noise(key, x.shape, o.sigma, dt, dtype))

  def sample_test(key: jax.Array, batch_size: int) -> Batch:
    k_jit, k_noise = jax.random.split(key)
    x = jnp.broadcast_to(spikes, (batch_size,) + spikes.shape)
    x = timing.jitter_spikes(k_jit, x, o.test_jitter_ms, dt)
    return _batch(x + timing.input_noise(k_noise, x.shape, o.test_sigma, dt, dtype))

  keys = timing.eval_keys(o.eval_seed)
  size = o.eval_size
  eval_sets = timing.build_eval_sets(keys, size, sample_train, sample_test)
  noise = f" plus input noise sigma={o.test_sigma}" if o.test_sigma else ""
  return Task(
    name="pattern_generation",
    n_in=o.n_in,
    n_out=o.n_out,
    n_steps=n,
    objective="mse",
    sample_train=sample_train,
    eval_sets=eval_sets,
    sample_test=sample_test,
    shift=(
      f"the frozen input with each spike jittered by N(0, {o.test_jitter_ms:g}^2) ms"
      f"{noise} (training: the frozen input, noise sigma={o.sigma})"
    ),
  )
