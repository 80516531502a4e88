"""Delayed match-to-sample, in neurogym's ``DelayMatchSample`` layout with rate inputs.

Each trial: fixation, a sample stimulus, a delay, a test stimulus, then a
decision window in which the network reports match (the test equals the
sample) or non-match. Stimuli are one of two identities shown one-hot on two
input channels; a third, fixation channel is 1 until the decision window opens
(neurogym's go signal). With two identities, match vs non-match is the XOR of
sample and test, the computation of ModProp's ``dlyXOR``, so no linear readout
of the last stimulus solves it. Inputs ``[fixation, stim_0, stim_1]``; both
stimulus channels carry Gaussian noise at every step (std ``sigma / sqrt(dt)``,
dt in ms, neurogym's convention). Outputs: ``[non-match, match]``; softmax
cross-entropy over the decision window (the mask), accuracy over its steps.

Trials are left-aligned in a fixed-length sequence sized for the longest
delay of either split; after the decision window, inputs are zero (plus
noise) and the mask is zero. Sample identity and match are fair coins, so
labels are balanced.

Test shift: delays drawn from ``[test_delay_min, test_delay_max]`` (by default
longer than any training delay, so the memory must be held past the durations
seen in training) and input noise ``test_sigma`` (by default twice training's).
Single-factor sets besides it (:data:`credit.tasks.base.SHIFT_SPLITS`): ``test_delay``
(the test delays at training's noise) and ``test_noise`` (training's delays at the
test noise), paired trial by trial with ``test`` and ``test_clean``
(:func:`credit.tasks.timing.shift_eval_sets`).
"""

from __future__ import annotations

from typing import NamedTuple

from credit.tasks import timing
from credit.tasks.base import Batch, Task, TaskShape, one_hot_at_steps

import jax
import jax.numpy as jnp
import ml_collections

N_IN = 3  # fixation, stimulus 0, stimulus 1
N_OUT = 2  # non-match, match


def default_options() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      dt=20.0,  # ms per step
      fixation=100.0,  # ms, all periods multiples of dt
      sample=200.0,
      delay_min=200.0,  # training delays ~ U{delay_min, ..., delay_max} on the dt grid
      delay_max=800.0,
      test=200.0,
      decision=200.0,
      sigma=1.0,  # input noise, std sigma / sqrt(dt) (neurogym's default sigma)
      test_delay_min=1000.0,  # test-split delays (the shift)
      test_delay_max=1400.0,
      test_sigma=2.0,  # test-split input noise (twice training's)
      eval_size=512,
      eval_seed=0,
    )
  )


class Split(NamedTuple):
  """The static parameters of one split's trial distribution (in steps)."""

  delay_min: int
  delay_max: int
  sigma: float


class Trials(NamedTuple):
  """Per-trial variables ``[B]``: sample identity, match, delay (steps)."""

  sample: jax.Array
  match: jax.Array
  delay: jax.Array


def validate(options: ml_collections.ConfigDict) -> None:
  o = options
  if not o.dt > 0:
    raise ValueError(f"task_options.dt must be > 0 (ms), got {o.dt}")
  for field in (
    "fixation",
    "sample",
    "test",
    "decision",
    "delay_min",
    "delay_max",
    "test_delay_min",
    "test_delay_max",
  ):
    timing.to_steps(o[field], o.dt, field)
  for field in ("sample", "test", "decision"):
    if o[field] < o.dt:
      raise ValueError(
        f"task_options.{field} must be at least one step (dt={o.dt} ms), got {o[field]}"
      )
  for lo, hi in (("delay_min", "delay_max"), ("test_delay_min", "test_delay_max")):
    if o[lo] > o[hi]:
      raise ValueError(f"task_options.{lo} must be <= {hi}, got {o[lo]} > {o[hi]}")
  for field in ("sigma", "test_sigma"):
    if o[field] < 0:
      raise ValueError(f"task_options.{field} must be >= 0, got {o[field]}")
  if not isinstance(o.eval_size, int) or o.eval_size < 1:
    raise ValueError(f"task_options.eval_size must be a positive integer, got {o.eval_size!r}")


def n_steps(options: ml_collections.ConfigDict) -> int:
  """Sequence length: the longest trial of either split."""
  o = options
  longest = max(o.delay_max, o.test_delay_max)
  return round((o.fixation + o.sample + longest + o.test + o.decision) / o.dt)


def splits(options: ml_collections.ConfigDict) -> dict[str, Split]:
  """The training and shifted trial distributions, in steps: ``test`` shifts delay and noise,
  ``test_delay`` the delay only, ``test_noise`` the noise only."""
  o = options
  train = (round(o.delay_min / o.dt), round(o.delay_max / o.dt))
  test = (round(o.test_delay_min / o.dt), round(o.test_delay_max / o.dt))
  return {
    "train": Split(*train, float(o.sigma)),
    "test": Split(*test, float(o.test_sigma)),
    "test_delay": Split(*test, float(o.sigma)),
    "test_noise": Split(*train, float(o.test_sigma)),
  }


def sample_trials(key: jax.Array, batch_size: int, split: Split) -> Trials:
  """Sample identity and match are fair coins; the delay is uniform on the split's grid."""
  k_s, k_m, k_d = jax.random.split(key, 3)
  return Trials(
    sample=jax.random.bernoulli(k_s, 0.5, (batch_size,)).astype(jnp.int32),
    match=jax.random.bernoulli(k_m, 0.5, (batch_size,)).astype(jnp.int32),
    delay=jax.random.randint(k_d, (batch_size,), split.delay_min, split.delay_max + 1),
  )


def periods(trials: Trials, options: ml_collections.ConfigDict, n: int) -> dict[str, jax.Array]:
  """Boolean masks ``[B, T]`` of the sample, test and decision periods, and the fixation span."""
  o = options
  fix, smp, tst, dec = (round(o[f] / o.dt) for f in ("fixation", "sample", "test", "decision"))
  b = trials.delay.shape[0]
  zero = jnp.zeros((b,), jnp.int32)
  test_start = fix + smp + trials.delay
  decision_start = test_start + tst
  return {
    "sample": timing.window(zero + fix, smp, n),
    "test": timing.window(test_start, tst, n),
    "decision": timing.window(decision_start, dec, n),
    "fixation": timing.window(zero, decision_start, n),
  }


def render(
  key: jax.Array,
  trials: Trials,
  split: Split,
  options: ml_collections.ConfigDict,
  n: int,
  dtype=jnp.float32,
) -> Batch:
  """The batch of ``trials``: inputs from the period masks plus noise, targets, mask."""
  p = periods(trials, options, n)
  test_id = jnp.where(trials.match == 1, trials.sample, 1 - trials.sample)
  stim = (
    p["sample"][..., None] * jax.nn.one_hot(trials.sample, 2)[:, None, :]
    + p["test"][..., None] * jax.nn.one_hot(test_id, 2)[:, None, :]
  )
  stim = stim.astype(dtype) + timing.input_noise(key, stim.shape, split.sigma, options.dt, dtype)
  inputs = jnp.concatenate([p["fixation"][..., None].astype(dtype), stim], axis=-1)
  mask = p["decision"].astype(dtype)
  return Batch(inputs, one_hot_at_steps(trials.match, N_OUT, mask, dtype), mask)


def shape(options: ml_collections.ConfigDict) -> TaskShape:
  return TaskShape(N_IN, N_OUT, train_size=None, val_size=int(options.eval_size))


def make(options: ml_collections.ConfigDict, dtype=jnp.float32) -> Task:
  validate(options)
  o = ml_collections.FrozenConfigDict(options)  # the samplers close over it: no later edits
  n = n_steps(o)
  sp = splits(o)

  def sampler(split: Split):
    def sample(key: jax.Array, batch_size: int) -> Batch:
      k_trials, k_noise = jax.random.split(key)
      return render(k_noise, sample_trials(k_trials, batch_size, split), split, o, n, dtype)

    return sample

  sample_train, sample_test = sampler(sp["train"]), sampler(sp["test"])
  keys = timing.eval_keys(o.eval_seed)
  eval_sets = timing.build_eval_sets(keys, o.eval_size, sample_train, sample_test)
  eval_sets.update(
    timing.shift_eval_sets(keys, o.eval_size, sampler(sp["test_delay"]), sampler(sp["test_noise"]))
  )
  return Task(
    name="delayed_match_to_sample",
    n_in=N_IN,
    n_out=N_OUT,
    n_steps=n,
    objective="xent",
    sample_train=sample_train,
    eval_sets=eval_sets,
    sample_test=sample_test,
    shift=(
      f"delays U[{o.test_delay_min:g}, {o.test_delay_max:g}] ms and input noise sigma="
      f"{o.test_sigma:g} (training: U[{o.delay_min:g}, {o.delay_max:g}] ms, sigma={o.sigma:g})"
    ),
  )
