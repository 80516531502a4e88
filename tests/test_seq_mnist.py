"""Sequential MNIST: splits, the test perturbation and batches (synthetic source)."""

from credit import tasks
from credit.tasks import seq_mnist

import jax
import numpy as np
import pytest


@pytest.fixture(scope="module")
def options():
  o = seq_mnist.default_options()
  o.source = "synthetic"
  o.train_eval_size = 256
  return o


def test_test_split_is_the_clean_split_plus_clipped_gaussian_noise(options):
  task = tasks.make("seq_mnist", options)
  clean = np.asarray(task.eval_sets["test_clean"].inputs)
  noisy = np.asarray(task.eval_sets["test"].inputs)
  assert noisy.min() >= 0 and noisy.max() <= 1
  # Mid-grey pixels: clipping at 0 or 1 needs a 2.25-sigma draw, so it barely biases.
  mid = (clean > 0.45) & (clean < 0.55)
  diff = (noisy - clean)[mid]
  assert diff.size > 10_000
  assert abs(diff.mean()) < 0.01 and abs(diff.std() - options.noise_std) < 0.015
  test, test_clean = task.eval_sets["test"], task.eval_sets["test_clean"]
  np.testing.assert_array_equal(test.targets, test_clean.targets)
  # The perturbation is fixed: a second build gives the same images.
  again = tasks.make("seq_mnist", options).eval_sets["test"].inputs
  np.testing.assert_array_equal(np.asarray(again), noisy)


def test_splits_are_disjoint_and_sized(options):
  data = seq_mnist.splits(options)
  assert data["x_train"].shape[0] == options.synthetic_train
  flat = lambda x: {a.tobytes() for a in x}
  assert not flat(data["x_val"]) & flat(data["x_train"])
  task = tasks.make("seq_mnist", options)
  train_eval = np.asarray(task.eval_sets["train"].inputs) * 255
  pool = flat(data["x_train"])
  assert all(np.rint(x).astype(np.uint8).tobytes() in pool for x in train_eval)
  assert task.train_size == options.synthetic_train


def test_batches_are_deterministic_with_loss_on_the_last_step(options):
  task = tasks.make("seq_mnist", options)
  sample = jax.jit(task.sample_train, static_argnums=1)
  a, b = sample(jax.random.key(0), 32), sample(jax.random.key(0), 32)
  c = sample(jax.random.key(1), 32)
  np.testing.assert_array_equal(a.inputs, b.inputs)
  assert not np.array_equal(a.inputs, c.inputs)
  assert a.inputs.shape == (32, 28, 28) and a.targets.shape == (32, 28, 10)
  mask = np.asarray(a.mask)
  assert np.all(mask[:, -1] == 1) and np.all(mask[:, :-1] == 0)
  np.testing.assert_allclose(np.asarray(a.targets).sum(-1), 1)


def test_bad_options_are_named():
  o = seq_mnist.default_options()
  o.source = "kaggle"
  with pytest.raises(ValueError, match="task_options.source must be one of"):
    seq_mnist.validate(o)
