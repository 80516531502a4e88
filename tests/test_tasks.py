"""The neuroscience task generators: determinism, layouts, balance, the test shift, learnability."""

import importlib
import math

from credit import tasks
from credit.tasks import delayed_match_to_sample as dms
from credit.tasks import evidence_accumulation as ea
from credit.tasks import pattern_generation as pg
from credit.tasks import timing
from credit.tasks.base import EVAL_SPLITS, SHIFT_SPLITS
from credit.training.train import make_train

import jax
import jax.numpy as jnp
import numpy as np
import pytest

GENERATED = ("pattern_generation", "delayed_match_to_sample", "evidence_accumulation")
TWO_FACTOR_SHIFT = ("delayed_match_to_sample", "evidence_accumulation")  # delay and noise


def _options(name, **changes):
  o = tasks.default_options(name)
  o.eval_size = 16  # small fixed sets: these tests look at generators, not evaluations
  for k, v in changes.items():
    o[k] = v
  return o


@pytest.fixture(scope="module")
def built():
  return {name: tasks.make(name, _options(name)) for name in GENERATED}


def _binomial_ok(successes, n, p=0.5, z=4.0):
  return abs(successes / n - p) <= z * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- interface


@pytest.mark.parametrize("name", GENERATED)
def test_interface_and_eval_sets(built, name):
  task = built[name]
  assert name in tasks.names()
  assert task.train_size is None and task.sample_test is not None and task.shift
  extra = SHIFT_SPLITS if name in TWO_FACTOR_SHIFT else ()
  assert set(task.eval_sets) == set(EVAL_SPLITS + extra)
  for batch in task.eval_sets.values():
    assert batch.inputs.shape == (16, task.n_steps, task.n_in)
    assert batch.targets.shape == (16, task.n_steps, task.n_out)
    assert batch.mask.shape == (16, task.n_steps)
    assert bool(jnp.all(jnp.sum(batch.mask, axis=1) > 0))


@pytest.mark.parametrize("name", GENERATED)
def test_generation_is_deterministic(built, name):
  task = built[name]
  k1, k2 = jax.random.key(1), jax.random.key(2)
  for sample in (task.sample_train, task.sample_test):
    eager = sample(k1, 16)
    jitted = jax.jit(sample, static_argnums=1)(k1, 16)
    again = sample(k1, 16)
    for a, b, c in zip(eager, jitted, again, strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
      np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    other = sample(k2, 16)
    frozen = name == "pattern_generation" and sample is task.sample_train
    # The frozen pattern without training noise is the same for every key (by design).
    assert np.array_equal(np.asarray(eager.inputs), np.asarray(other.inputs)) == frozen
  # Eval sets are fixed by eval_seed: rebuilding gives the same batches.
  rebuilt = tasks.make(name, _options(name))
  for split in EVAL_SPLITS:
    np.testing.assert_array_equal(
      np.asarray(task.eval_sets[split].inputs), np.asarray(rebuilt.eval_sets[split].inputs)
    )


# --------------------------------------------------------------------------- helpers


def test_input_noise_follows_neurogym_scaling():
  x = timing.input_noise(jax.random.key(0), (200_000,), sigma=1.5, dt=20.0)
  assert abs(float(jnp.std(x)) - 1.5 / math.sqrt(20.0)) < 0.01 * 1.5 / math.sqrt(20.0) * 3
  assert float(jnp.max(jnp.abs(timing.input_noise(jax.random.key(0), (5,), 0.0, 20.0)))) == 0


def test_poisson_rate_and_jitter_keep_counts():
  spikes = timing.poisson_spikes(jax.random.key(0), jnp.full((4, 500, 50), 40.0), dt=10.0)
  assert abs(float(spikes.mean()) - 0.4) < 0.01
  moved = timing.jitter_spikes(jax.random.key(1), spikes, jitter_ms=20.0, dt=10.0)
  np.testing.assert_array_equal(np.asarray(moved.sum(1)), np.asarray(spikes.sum(1)))
  assert not np.array_equal(np.asarray(moved), np.asarray(spikes))
  assert timing.jitter_spikes(jax.random.key(1), spikes, 0.0, 10.0) is spikes
  np.testing.assert_array_equal(
    np.asarray(timing.reflect(jnp.array([-2, -1, 0, 4, 5, 6]), 5)), [1, 0, 0, 4, 4, 3]
  )


def test_to_steps_rejects_off_grid_durations():
  assert timing.to_steps(300.0, 20.0) == 15
  with pytest.raises(ValueError, match="t_cue"):
    timing.to_steps(150.0, 20.0, "t_cue")


# --------------------------------------------------------------------------- pattern generation


def test_pattern_generation_is_one_frozen_pattern(built):
  task = built["pattern_generation"]
  batch = task.sample_train(jax.random.key(3), 16)
  assert task.n_steps == 100 and task.n_in == 100 and task.objective == "mse"
  np.testing.assert_array_equal(np.asarray(batch.mask), 1.0)
  for x in (batch.inputs, batch.targets):  # no training noise: every element is the pattern
    np.testing.assert_array_equal(np.asarray(x[1:]), np.broadcast_to(x[:1], x[1:].shape))
  spikes, target = pg.frozen_pattern(_options("pattern_generation"))
  np.testing.assert_array_equal(np.asarray(batch.inputs[0]), spikes)
  assert set(np.unique(spikes)) <= {0.0, 1.0} and abs(spikes.mean() - 0.5) < 0.02  # 50 Hz * 10 ms
  assert target.min() == 0 and target.max() == 1
  # The target is the sum of the 4 sines: its spectrum lives at 1, 2, 3, 5 cycles per second.
  power = np.abs(np.fft.rfft(target[:, 0] - target[:, 0].mean())) ** 2
  assert set(np.argsort(power)[-4:]) == {1, 2, 3, 5}
  other, _ = pg.frozen_pattern(_options("pattern_generation", pattern_seed=1))
  assert not np.array_equal(spikes, other)
  # With training noise, examples and keys differ around the same pattern.
  noisy = tasks.make("pattern_generation", _options("pattern_generation", sigma=0.5))
  a, b = noisy.sample_train(jax.random.key(0), 16), noisy.sample_train(jax.random.key(1), 16)
  assert not np.array_equal(np.asarray(a.inputs), np.asarray(b.inputs))
  assert not np.array_equal(np.asarray(a.inputs[0]), np.asarray(a.inputs[1]))
  assert abs(float(jnp.std(a.inputs - spikes)) - 0.5 / math.sqrt(10.0)) < 0.01


def test_pattern_generation_test_split_is_jittered_pattern(built):
  task = built["pattern_generation"]
  train = task.sample_train(jax.random.key(0), 16)
  test = task.sample_test(jax.random.key(0), 16)
  np.testing.assert_array_equal(np.asarray(test.targets), np.asarray(train.targets))
  # Same spikes per channel, at other times, and a different jitter per example.
  np.testing.assert_array_equal(np.asarray(test.inputs.sum(1)), np.asarray(train.inputs.sum(1)))
  moved = np.mean(np.asarray(test.inputs != train.inputs))
  assert 0.05 < moved < 0.6
  assert not np.array_equal(np.asarray(test.inputs[0]), np.asarray(test.inputs[1]))
  # Without jitter and noise the test split is the training pattern.
  same = tasks.make("pattern_generation", _options("pattern_generation", test_jitter_ms=0.0))
  np.testing.assert_array_equal(
    np.asarray(same.sample_test(jax.random.key(0), 16).inputs), np.asarray(train.inputs)
  )


# ------------------------------------------------------------------------ delayed match-to-sample


def _dms_batch(split, batch_size, sigma=None, key=0):
  o = _options("delayed_match_to_sample")
  sp = dms.splits(o)[split]
  if sigma is not None:
    sp = sp._replace(sigma=sigma)
  n = dms.n_steps(o)
  k_trials, k_noise = jax.random.split(jax.random.key(key))
  trials = dms.sample_trials(k_trials, batch_size, sp)
  return o, trials, dms.render(k_noise, trials, sp, o, n)


def test_dms_layout_mask_and_labels():
  o, trials, batch = _dms_batch("train", 256, sigma=0.0)
  x, mask = np.asarray(batch.inputs), np.asarray(batch.mask)
  delay = np.asarray(trials.delay)
  fix, smp, tst, dec = 5, 10, 10, 10  # defaults at dt = 20 ms
  for b in range(0, 256, 17):
    d0 = fix + smp + delay[b] + tst
    expected = np.zeros(mask.shape[1])
    expected[d0 : d0 + dec] = 1
    np.testing.assert_array_equal(mask[b], expected)  # exactly the decision window
    np.testing.assert_array_equal(x[b, :, 0], np.arange(mask.shape[1]) < d0)  # fixation
    sample_id = np.argmax(x[b, fix : fix + smp, 1:].sum(0))
    test_id = np.argmax(x[b, d0 - tst : d0, 1:].sum(0))
    assert np.all(x[b, fix : fix + smp, 1 + sample_id] == 1)
    assert np.sum(x[b, :, 1:]) == smp + tst  # nothing outside the two stimuli
    assert np.argmax(batch.targets[b, d0]) == int(sample_id == test_id)
  # Labels balanced; delays on the training grid.
  _, big, _ = _dms_batch("train", 4000, sigma=0.0, key=1)
  assert _binomial_ok(int(big.match.sum()), 4000)
  assert _binomial_ok(int(big.sample.sum()), 4000)
  assert delay.min() >= o.delay_min / o.dt and delay.max() <= o.delay_max / o.dt


def test_dms_test_split_has_longer_delays_and_declared_noise(built):
  task = built["delayed_match_to_sample"]
  o = _options("delayed_match_to_sample")
  assert task.n_steps == round((100 + 200 + o.test_delay_max + 200 + 200) / o.dt)

  def delays(batch):  # decision onset minus fixation, sample and test, in ms
    onset = np.argmax(np.asarray(batch.mask) > 0, axis=1)
    return (onset - (100 + 200 + 200) / o.dt) * o.dt

  train = delays(task.sample_train(jax.random.key(0), 256))
  test = delays(task.sample_test(jax.random.key(0), 256))
  assert o.delay_min <= train.min() and train.max() <= o.delay_max
  assert o.test_delay_min <= test.min() and test.max() <= o.test_delay_max
  assert train.max() < test.min()  # every test delay is outside the training range
  # Stimulus-channel noise has std sigma / sqrt(dt) (neurogym), test_sigma in the test split;
  # the fixation channel is noise-free.
  for split, sigma in (("train", o.sigma), ("test", o.test_sigma)):
    _, _, noisy = _dms_batch(split, 256)
    _, _, clean = _dms_batch(split, 256, sigma=0.0)
    resid = np.asarray(noisy.inputs - clean.inputs)
    assert abs(resid[..., 1:].std() - sigma / math.sqrt(o.dt)) < 0.01
    assert not resid[..., 0].any()


# --------------------------------------------------------------------------- evidence accumulation


def test_ea_layout_mask_and_labels():
  o = _options("evidence_accumulation")
  sp = ea.splits(o)["train"]
  n = ea.n_steps(o)
  k_trials, k_render = jax.random.split(jax.random.key(0))
  trials = ea.sample_trials(k_trials, 256, sp, o.p_group)
  batch = ea.render(k_render, trials, sp, o, n)
  x, mask = np.asarray(batch.inputs), np.asarray(batch.mask)
  assert x.shape[-1] == 40 and set(np.unique(x)) <= {0.0, 1.0}  # no training noise
  groups = x.reshape(x.shape[0], n, 4, 10).sum(-1)  # spikes per group and step
  delay, sides = np.asarray(trials.delay), np.asarray(trials.sides)
  last_cue_end = (50 + 6 * 150 + 100) // 10
  t = np.arange(n)
  cue_steps = np.zeros(n, bool)
  for k in range(7):
    cue_steps[5 + 15 * k : 5 + 15 * k + 10] = True
  for b in range(0, 256, 13):
    onset = last_cue_end + delay[b]
    np.testing.assert_array_equal(mask[b], (t >= onset) & (t < onset + 15))  # recall window
    assert np.all(groups[b, ~mask[b].astype(bool), 2] == 0)  # recall channels only then
    assert np.all(groups[b, ~cue_steps, :2] == 0)  # cue channels silent between cues
    for k in range(7):  # only the cue's side fires during cue k
      assert np.all(groups[b, 5 + 15 * k : 15 + 15 * k, 1 - sides[b, k]] == 0)
    label = int(sides[b].sum() > 3)
    assert np.argmax(batch.targets[b, onset]) == label
  # Cue and background rates: 40 Hz -> 0.4 and 10 Hz -> 0.1 spikes per step at dt = 10 ms.
  cue_rate = groups[:, cue_steps, :2].sum() / (10 * cue_steps.sum() * x.shape[0])
  assert abs(cue_rate - 0.4) < 0.02
  assert abs(groups[..., 3].mean() / 10 - 0.1) < 0.005
  # Balanced labels and e-prop's per-trial cue bias (P(left) = 0.3 or 0.7).
  big = ea.sample_trials(jax.random.key(1), 4000, sp, o.p_group)
  assert _binomial_ok(int(big.label.sum()), 4000)
  frac_right = np.asarray(big.sides).mean(1)
  assert abs(np.mean(frac_right) - 0.5) < 0.02
  assert abs(np.mean(np.abs(frac_right - 0.5)) - 0.2) < 0.03  # ~|0.7 - 0.5| on average


def test_ea_test_split_has_longer_delays_and_input_noise(built):
  task = built["evidence_accumulation"]
  o = _options("evidence_accumulation")

  def stats(batch):
    onset = np.argmax(np.asarray(batch.mask) > 0, axis=1)
    delay_ms = (onset - (50 + 6 * 150 + 100) / o.dt) * o.dt
    background = np.asarray(batch.inputs)[..., 30:]
    return delay_ms, background.mean() * 1000 / o.dt, background.var()

  train_delay, train_bg, train_var = stats(task.sample_train(jax.random.key(0), 256))
  test_delay, test_bg, test_var = stats(task.sample_test(jax.random.key(0), 256))
  assert o.delay_min <= train_delay.min() and train_delay.max() <= o.delay_max
  assert o.test_delay_min <= test_delay.min() and test_delay.max() <= o.test_delay_max
  assert train_delay.max() < test_delay.min()
  # Same background rate; the test adds noise of variance sigma^2 / dt (none in training).
  p = o.f_background * o.dt / 1000
  assert abs(train_bg - o.f_background) < 0.5 and abs(test_bg - o.f_background) < 0.5
  assert abs(train_var - p * (1 - p)) < 0.005
  assert abs(test_var - p * (1 - p) - o.test_sigma**2 / o.dt) < 0.01
  # The other declared shifts: background rate, and unseen cue counts (a 9-cue test split
  # sizes the sequence for its longer cue period).
  nine = _options("evidence_accumulation", test_n_cues=9, test_f_background=20.0, test_sigma=0.0)
  n = ea.n_steps(nine)
  assert n == task.n_steps + 2 * 15
  sp = ea.splits(nine)["test"]
  k_trials, k_render = jax.random.split(jax.random.key(0))
  batch = ea.render(k_render, ea.sample_trials(k_trials, 256, sp, o.p_group), sp, nine, n)
  assert abs(stats(batch)[1] - 20.0) < 0.7
  cues = np.asarray(batch.inputs)[..., :20].sum((0, 2))
  assert cues[5 + 15 * 8 : 15 + 15 * 8].sum() > 0  # a 9th cue slot is used


# ------------------------------------------------------------------ single-factor shift splits


def _factors(name, batch, o):
  """Per trial delay (ms, from the loss mask's onset), and the input noise's std over
  channel-steps that carry no signal (DMS: stimulus channels during fixation; evidence
  accumulation: cue and recall channels in the initial silence)."""
  onset = np.argmax(np.asarray(batch.mask) > 0, axis=1)
  x = np.asarray(batch.inputs)
  if name == "delayed_match_to_sample":
    delay = onset * o.dt - (o.fixation + o.sample + o.test)
    quiet = x[:, : round(o.fixation / o.dt), 1:]
  else:
    delay = onset * o.dt - (o.t_silence + (o.n_cues - 1) * o.t_interval + o.t_cue)
    quiet = x[:, : round(o.t_silence / o.dt), : 3 * o.n_per_group]
  return delay, float(quiet.std())


@pytest.mark.parametrize("name", TWO_FACTOR_SHIFT)
def test_single_factor_shift_splits_differ_from_training_in_their_factor_only(name):
  o = _options(name, eval_size=512)
  task = tasks.make(name, o)
  sets = task.eval_sets
  factors = {split: _factors(name, batch, o) for split, batch in sets.items()}
  noise = {split: f[1] for split, f in factors.items()}
  train_range, test_range = (o.delay_min, o.delay_max), (o.test_delay_min, o.test_delay_max)
  expected = {  # split: (delay range, noise std)
    "train": (train_range, o.sigma),
    "val": (train_range, o.sigma),
    "test_clean": (train_range, o.sigma),
    "test": (test_range, o.test_sigma),
    "test_delay": (test_range, o.sigma),
    "test_noise": (train_range, o.test_sigma),
  }
  assert o.sigma != o.test_sigma and o.delay_max < o.test_delay_min  # both factors shift
  for split, ((lo, hi), sigma) in expected.items():
    delay = factors[split][0]
    assert lo <= delay.min() and delay.max() <= hi, split
    assert delay.max() - delay.min() > 0.5 * (hi - lo), split  # the range is sampled
    assert noise[split] == pytest.approx(sigma / math.sqrt(o.dt), abs=0.01), split
  # Pairs that differ in one factor trial by trial: the same trials (masks, targets), and
  # the same noise draws scaled to the other std.
  for shifted, base in (("test_delay", "test"), ("test_noise", "test_clean")):
    np.testing.assert_array_equal(np.asarray(sets[shifted].mask), np.asarray(sets[base].mask))
    np.testing.assert_array_equal(np.asarray(sets[shifted].targets), np.asarray(sets[base].targets))
  assert not np.array_equal(np.asarray(sets["test_delay"].inputs), np.asarray(sets["test"].inputs))


def test_shift_split_scores_are_columns_of_an_evaluation():
  config = importlib.import_module("configs.delayed_match_to_sample").get_config("smoke")
  config.num_steps, config.eval_every = 10, 10
  _, metrics = jax.jit(make_train(config))(jax.random.key(0))
  for split in SHIFT_SPLITS:
    for kind in ("acc", "loss"):
      values = np.asarray(metrics[f"{split}_{kind}"])
      assert values.shape == (2,) and np.all(np.isfinite(values))
  # Each column reads its own set: test (both factors) is neither single-factor set.
  loss = {k: np.asarray(v) for k, v in metrics.items() if k.endswith("_loss")}
  assert np.all(loss["test_loss"] != loss["test_delay_loss"])
  assert np.all(loss["test_noise_loss"] != loss["test_clean_loss"])


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
  "name, field, value",
  [
    ("pattern_generation", "duration", 1005.0),
    ("pattern_generation", "f_input", 200.0),
    ("pattern_generation", "test_jitter_ms", -1.0),
    ("pattern_generation", "n_out", 0),
    ("delayed_match_to_sample", "delay_max", 150.0),
    ("delayed_match_to_sample", "test_delay_min", 2000.0),
    ("delayed_match_to_sample", "decision", 0.0),
    ("delayed_match_to_sample", "test_sigma", -0.5),
    ("evidence_accumulation", "n_cues", 6),
    ("evidence_accumulation", "t_interval", 50.0),
    ("evidence_accumulation", "f_cue", 150.0),
    ("evidence_accumulation", "p_group", 1.5),
    ("evidence_accumulation", "t_cue", 105.0),
  ],
)
def test_validation_names_the_field(name, field, value):
  o = tasks.default_options(name)
  o[field] = value
  with pytest.raises(ValueError, match=field):
    tasks.validate(name, o)


# --------------------------------------------------------------------------- learnability


@pytest.mark.parametrize(
  "name, threshold",
  [("pattern_generation", 0.5), ("delayed_match_to_sample", 0.8), ("evidence_accumulation", 0.8)],
)
def test_bptt_learns_smoke_config(name, threshold):
  config = importlib.import_module(f"configs.{name}").get_config("smoke")
  train = make_train(config)
  keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  _, metrics = jax.jit(jax.vmap(train))(keys)
  val = np.asarray(metrics["val_acc"])
  assert np.all(val[:, -1] > threshold), val[:, -1]
  assert np.all(val[:, -1] > val[:, 0] + 0.2)
