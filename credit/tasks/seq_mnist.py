"""Row-wise sequential MNIST (the reference task of Liu et al. 2022).

28 steps of 28 inputs (one image row per step), 10 classes, softmax
cross-entropy on the last step only. Split 55,000 train / 5,000 validation
(the first 5,000 training images, as TF's ``read_data_sets``) / 10,000 test.
The test split is perturbed as in the reference code: i.i.d. Gaussian noise
per pixel, clipped to [0, 1], drawn once from ``noise_seed`` so that every
evaluation sees the same perturbed images.
"""

from __future__ import annotations

from credit.data import mnist
from credit.tasks.base import Batch, Task, TaskShape, one_hot_at_steps

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

SOURCES = ("mnist", "synthetic")
N_VAL = 5000


def default_options() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      source="mnist",  # or "synthetic": a small MNIST-shaped source for tests
      noise_std=0.2,  # std of the test perturbation
      noise_seed=0,
      train_eval_size=2048,  # fixed training subset for train loss / accuracy
      synthetic_train=4000,  # sizes of the synthetic source
      synthetic_test=1000,
    )
  )


def validate(options: ml_collections.ConfigDict) -> None:
  if options.source not in SOURCES:
    raise ValueError(f"task_options.source must be one of {SOURCES}, got {options.source!r}")
  if options.noise_std < 0:
    raise ValueError(f"task_options.noise_std must be >= 0, got {options.noise_std}")
  if options.train_eval_size < 1:
    raise ValueError("task_options.train_eval_size must be >= 1")
  if options.source == "mnist":
    mnist.data_dir()  # a data folder that cannot be used is found with the config's errors


def shape(options: ml_collections.ConfigDict) -> TaskShape:
  """28 inputs, 10 classes; the split sizes of :func:`splits` (without loading anything)."""
  if options.source == "mnist":
    return TaskShape(28, 10, train_size=60_000 - N_VAL, val_size=N_VAL)
  return TaskShape(28, 10, train_size=int(options.synthetic_train), val_size=N_VAL // 10)


def _as_batch(images: np.ndarray, labels: np.ndarray, dtype) -> Batch:
  n = images.shape[0]
  x = jnp.asarray(images, dtype)
  mask = jnp.zeros((n, 28), dtype).at[:, -1].set(1.0)
  return Batch(x, one_hot_at_steps(jnp.asarray(labels), 10, mask, dtype), mask)


def splits(options: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Train / validation / test arrays from the configured source (uint8 images)."""
  if options.source == "mnist":
    raw = mnist.load_mnist()
  else:
    raw = mnist.synthetic_mnist(
      options.noise_seed + 1, options.synthetic_train + N_VAL // 10, options.synthetic_test
    )
  n_val = N_VAL if options.source == "mnist" else N_VAL // 10
  return {
    "x_train": raw["x_train"][n_val:],
    "y_train": raw["y_train"][n_val:],
    "x_val": raw["x_train"][:n_val],
    "y_val": raw["y_train"][:n_val],
    "x_test": raw["x_test"],
    "y_test": raw["y_test"],
  }


def make(options: ml_collections.ConfigDict, dtype=jnp.float32) -> Task:
  validate(options)
  data = splits(options)
  n_train = data["x_train"].shape[0]
  if options.train_eval_size > n_train:
    raise ValueError(
      f"task_options.train_eval_size={options.train_eval_size} exceeds the {n_train} "
      "training examples"
    )
  pool = jnp.asarray(data["x_train"])  # uint8: a quarter of the float32 footprint
  pool_labels = jnp.asarray(data["y_train"])

  def sample_train(key: jax.Array, batch_size: int) -> Batch:
    idx = jax.random.randint(key, (batch_size,), 0, n_train)
    images = pool[idx].astype(dtype) / 255.0
    mask = jnp.zeros((batch_size, 28), dtype).at[:, -1].set(1.0)
    return Batch(images, one_hot_at_steps(pool_labels[idx], 10, mask, dtype), mask)

  clean_test = data["x_test"].astype(np.float32) / 255.0
  rng = np.random.default_rng(options.noise_seed)
  noisy_test = np.clip(clean_test + rng.normal(0.0, options.noise_std, clean_test.shape), 0, 1)
  eval_idx = np.random.default_rng(options.noise_seed + 12345).choice(
    n_train, options.train_eval_size, replace=False
  )
  eval_sets = {
    "train": _as_batch(data["x_train"][eval_idx] / 255.0, data["y_train"][eval_idx], dtype),
    "val": _as_batch(data["x_val"] / 255.0, data["y_val"], dtype),
    "test": _as_batch(noisy_test, data["y_test"], dtype),
    "test_clean": _as_batch(clean_test, data["y_test"], dtype),
  }
  return Task(
    name="seq_mnist",
    n_in=28,
    n_out=10,
    n_steps=28,
    objective="xent",
    sample_train=sample_train,
    eval_sets=eval_sets,
    train_size=n_train,
    loss_steps=(27,),
    shift=f"test images + i.i.d. N(0, {options.noise_std}^2) pixel noise, clipped to [0, 1]",
  )
