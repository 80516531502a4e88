"""Shared fixtures. credit is imported first so that its JAX settings apply."""

import credit  # noqa: F401  (before jax: see credit.runtime)

import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
  """Runs a numerics test in float64 (``jax.enable_x64`` context)."""
  with jax.enable_x64(True):
    yield


def assert_trees_close(a, b, rtol=1e-10, atol=0.0):
  """Every leaf of ``a`` equals ``b`` within a relative error on the leaf's norm."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(la, lb, strict=True):
    x, y = np.asarray(x), np.asarray(y)
    err = np.linalg.norm(x - y)
    scale = max(np.linalg.norm(y), 1e-300)
    assert err <= rtol * scale + atol, f"relative error {err / scale:.3e} > {rtol:.1e}"


def relative_error(a, b) -> float:
  """``||a - b|| / ||b||`` over all leaves of two pytrees."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  pairs = zip(la, lb, strict=True)
  num = sum(float(np.sum((np.asarray(x) - np.asarray(y)) ** 2)) for x, y in pairs)
  den = sum(float(np.sum(np.asarray(y) ** 2)) for y in lb)
  return (num / max(den, 1e-300)) ** 0.5


def smoke_config(**overrides):
  """``configs/seq_mnist.py:smoke`` with dotted overrides, e.g. ``**{"model.n_hidden": 16}``."""
  from configs.seq_mnist import get_config

  config = get_config("smoke")
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return config


def xent_task(spec):
  """A cross-entropy :class:`credit.tasks.base.Task` shell for ``spec`` (losses only, no data)."""
  from credit.tasks.base import Task

  return Task(
    name="tiny",
    n_in=spec.n_in,
    n_out=spec.n_out,
    n_steps=0,
    objective="xent",
    sample_train=None,
    eval_sets={},
    shift="",
  )


def random_network(spec, w_rec, rng, batch: int, steps: int, w_in_std: float | None = None):
  """Params around a given ``W_rec``, a trajectory and per-step output errors (float64).

  Random numbers come from numpy (``rng``, drawn in a fixed order: ``W_in``, ``b``,
  ``W_out``, ``b_out``, inputs, ``h0``, errors): compiling JAX's PRNG costs seconds on
  CPU. ``W_in ~ N(0, w_in_std^2)``, by default ``2 / N_in``. Call under ``x64``.
  """
  from credit.models import rnn

  import jax.numpy as jnp

  n, n_in, n_out = spec.n_hidden, spec.n_in, spec.n_out
  std = np.sqrt(2 / n_in) if w_in_std is None else w_in_std
  params = {
    "w_in": rng.normal(0, std, (n, n_in)),
    "w_rec": w_rec,
    "b": rng.normal(0, 0.3, n),
    "w_out": rng.normal(0, np.sqrt(1 / n), (n_out, n)),
    "b_out": rng.normal(0, 0.3, n_out),
  }
  params = rnn.project({k: jnp.asarray(v, jnp.float64) for k, v in params.items()}, spec)
  x = jnp.asarray(rng.normal(size=(batch, steps, n_in)), jnp.float64)
  h0 = jnp.asarray(rng.normal(0, 0.5, (batch, n)), jnp.float64)
  errors = jnp.asarray(rng.normal(size=(batch, steps, n_out)), jnp.float64)
  traj = jax.jit(rnn.forward, static_argnums=1)(params, spec, x, h0)
  return spec, params, traj, errors
