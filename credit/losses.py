"""Losses and scores on masked output sequences, and the L2 penalty.

Every loss is a mean over the masked (example, step) pairs, so that a task
whose loss counts only at the last step (sequential MNIST) reduces to the
batch mean, and a task with a decision window averages over that window.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

OBJECTIVES = ("xent", "mse")
PENALIZED = ("w_in", "w_rec", "w_out")


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def cross_entropy(y: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  r"""Softmax cross-entropy :math:`-\sum_k y^*_k \log \mathrm{softmax}(y)_k`, masked mean.

  Args:
    y: logits ``[B, T, K]``.
    targets: one-hot (or soft) labels ``[B, T, K]``.
    mask: ``[B, T]`` weights of each step.
  """
  per_step = -jnp.sum(targets * jax.nn.log_softmax(y, axis=-1), axis=-1)
  return _masked_mean(per_step, mask)


def masked_mse(y: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  r"""Mean squared error :math:`\frac1K\|y - y^*\|^2`, masked mean over steps."""
  per_step = jnp.mean((y - targets) ** 2, axis=-1)
  return _masked_mean(per_step, mask)


def accuracy(y: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Fraction of masked steps whose argmax output matches the argmax target."""
  hit = (jnp.argmax(y, -1) == jnp.argmax(targets, -1)).astype(y.dtype)
  return _masked_mean(hit, mask)


def r2_score(y: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Coefficient of determination 1 - SSE/SST over masked steps (pooled over outputs)."""
  m = mask[..., None]
  mean = jnp.sum(targets * m, axis=(0, 1)) / jnp.maximum(jnp.sum(m), 1.0)
  sse = jnp.sum(((y - targets) ** 2) * m)
  sst = jnp.sum(((targets - mean) ** 2) * m)
  return 1.0 - sse / jnp.maximum(sst, 1e-12)


def loss_fn(objective: str):
  """The data loss ``(y, targets, mask) -> scalar`` of an objective."""
  if objective == "xent":
    return cross_entropy
  if objective == "mse":
    return masked_mse
  raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def score_fn(objective: str):
  """Accuracy for classification, R^2 for regression."""
  if objective == "xent":
    return accuracy
  if objective == "mse":
    return r2_score
  raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def l2_penalty(params: dict, reg_l2: float) -> jax.Array:
  r"""Reference convention: :math:`\lambda \cdot \tfrac12 \sum w^2` over W_in, W_rec, W_out."""
  return reg_l2 * 0.5 * sum(jnp.sum(params[k] ** 2) for k in PENALIZED)


def l2_gradient(params: dict, reg_l2: float) -> dict:
  """Exact gradient of :func:`l2_penalty` (zero for the biases)."""
  return {k: (reg_l2 * v if k in PENALIZED else jnp.zeros_like(v)) for k, v in params.items()}
