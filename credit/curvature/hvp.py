r"""Hessian-vector products of the exact loss, over a chosen subset of parameters.

For a loss :math:`L(\theta; \mathcal{B})` on a **fixed** batch and a split of the
parameters into a measured subset :math:`\theta_S` and the rest (held fixed),
the operator is

.. math::

  v \mapsto H_{SS} v = \frac{\partial}{\partial \epsilon}
      \nabla_{\theta_S} L(\theta_S + \epsilon v, \theta_{\bar S}) \Big|_{\epsilon = 0},

computed forward-over-reverse (``jax.jvp`` of ``jax.grad``): one HVP costs
about one gradient's reverse pass plus its forward-mode tangent.

Large batches are cut into equal chunks and the per-chunk HVPs are accumulated
by a ``lax.scan``, so memory holds one chunk's activations at a time. The loss
is a mean, so chunk results are **averaged**, not summed: for chunk weights
:math:`\omega_c \ge 0` with :math:`\sum_c \omega_c = 1` and
:math:`L_c = D_c + R` (the chunk's data loss plus the batch-independent
regularizer),

.. math::

  \sum_c \omega_c L_c = \sum_c \omega_c D_c + R,

so the L2 term is counted exactly once, and the data part is exact whenever
:math:`D = \sum_c \omega_c D_c`. For a :class:`~credit.tasks.base.Batch` the
weights are each chunk's share of the loss mask,
:math:`\omega_c = M_c / M`, which makes the masked means of
:mod:`credit.losses` exact even when chunks hold different numbers of masked
steps (:math:`D = \sum_{b,t} \ell_{bt} m_{bt} / M = \sum_c (M_c/M) D_c`);
other batch types get equal weights :math:`1/C`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]
MatVec = Callable[[PyTree], PyTree]


def select(params: dict, subset: Sequence[str] | None) -> dict:
  """The measured sub-pytree: ``{k: params[k] for k in subset}`` (all of ``params`` if None)."""
  if subset is None:
    return params
  missing = [k for k in subset if k not in params]
  if missing:
    raise ValueError(f"subset names {missing} are not parameters; have {sorted(params)}")
  return {k: params[k] for k in subset}


def _merge(params: dict, sub: dict) -> dict:
  return {**params, **sub}


def _num_examples(batch: Any) -> int:
  sizes = {x.shape[0] for x in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(f"batch leaves disagree on the number of examples: {sorted(sizes)}")
  return sizes.pop()


def chunk_weights(batch: Any, num_chunks: int, dtype) -> jax.Array:
  """Weights ``omega_c`` (summing to one) of ``num_chunks`` equal, consecutive chunks.

  A batch with a ``mask`` field (:class:`~credit.tasks.base.Batch`) weighs each
  chunk by its share of the mask total; any other batch gets equal weights.
  """
  mask = getattr(batch, "mask", None)
  if mask is None:
    return jnp.full((num_chunks,), 1.0 / num_chunks, dtype)
  per_chunk = jnp.sum(jnp.reshape(mask, (num_chunks, -1)), axis=1).astype(dtype)
  total = jnp.sum(per_chunk)
  # An all-zero mask makes every chunk's data loss zero: any weights summing to one do.
  return jnp.where(total > 0, per_chunk / jnp.where(total > 0, total, 1.0), 1.0 / num_chunks)


def make_grad(
  loss_fn: LossFn,
  params: dict,
  batch: Any,
  subset: Sequence[str] | None = None,
  chunk_size: int = 0,
) -> Callable[[dict], dict]:
  r"""The gradient ``theta_S -> grad_S L`` on a fixed batch, chunked over examples.

  Args:
    loss_fn: ``(params, batch) -> scalar``, a mean over examples plus any
      regularizer (e.g. :func:`credit.training.objective.make_total_loss`).
    params: the full parameter dict; entries outside ``subset`` are held fixed.
    batch: a pytree of arrays with a leading example axis.
    subset: names of the measured parameters, e.g. ``("w_rec",)``; ``None``
      for all of them.
    chunk_size: examples per chunk; ``0`` (or at least the batch size) runs the
      batch at once. Must divide the number of examples.

  Returns:
    ``grad_fn(sub) -> grads`` with the structure of ``select(params, subset)``.
  """
  select(params, subset)  # validates names
  n = _num_examples(batch)
  if chunk_size < 0:
    raise ValueError(f"chunk_size must be >= 0, got {chunk_size}")

  def chunk_loss(sub, chunk):
    return loss_fn(_merge(params, sub), chunk)

  if chunk_size == 0 or chunk_size >= n:
    return lambda sub: jax.grad(chunk_loss)(sub, batch)
  if n % chunk_size:
    raise ValueError(f"chunk_size={chunk_size} must divide the {n} examples of the curvature batch")
  num_chunks = n // chunk_size
  chunks = jax.tree.map(lambda x: jnp.reshape(x, (num_chunks, chunk_size) + x.shape[1:]), batch)
  dtype = jax.tree.leaves(params)[0].dtype
  weights = chunk_weights(batch, num_chunks, dtype)

  def grad_fn(sub):
    def body(acc, xs):
      chunk, w = xs
      g = jax.grad(chunk_loss)(sub, chunk)
      return jax.tree.map(lambda a, b: a + w * b, acc, g), None

    acc, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, sub), (chunks, weights))
    return acc

  return grad_fn


def make_hvp(
  loss_fn: LossFn,
  params: dict,
  batch: Any,
  subset: Sequence[str] | None = None,
  chunk_size: int = 0,
  mask: dict | None = None,
  linearize: bool = False,
  matmul_precision: str | None = "highest",
) -> MatVec:
  r"""Hessian-vector product ``v -> H_SS v`` of ``loss_fn`` at ``params`` on ``batch``.

  With a ``mask`` :math:`P` (0/1 entries, e.g. the allowed recurrent synapses)
  the operator is :math:`P H P`: the Hessian restricted to the free
  coordinates, with zero rows and columns for the frozen ones (a stored weight
  that the model multiplies by zero still carries the L2 curvature
  :math:`\lambda_{L2}` otherwise).

  Args:
    loss_fn: ``(params, batch) -> scalar``, the exact objective.
    params: full parameter dict (the point of expansion).
    batch: fixed batch with a leading example axis.
    subset: measured parameter names (``("w_rec",)`` as the reference); ``None``
      for all parameters.
    chunk_size: examples per chunk (0: whole batch at once); see :func:`make_grad`.
    mask: optional pytree like ``select(params, subset)`` of 0/1 multipliers.
    linearize: if True, run the primal gradient once with ``jax.linearize`` and
      apply only its linear tangent map per HVP (cheaper when many HVPs share
      the point, at the memory cost of storing the residuals of every chunk).
    matmul_precision: precision the products are traced at
      (``jax.default_matmul_precision``). On GPUs, float32 matmuls at default
      precision may run as TF32 (relative error ~1e-3 per product), which would
      limit every eigenvalue to that accuracy; ``None`` keeps the ambient
      setting. No effect on CPU.

  Returns:
    ``hvp(v) -> Hv``, both with the structure of ``select(params, subset)``.
  """
  return make_gradient_and_hvp(
    loss_fn, params, batch, subset, chunk_size, mask, linearize, matmul_precision
  )[1]


def make_gradient_and_hvp(
  loss_fn: LossFn,
  params: dict,
  batch: Any,
  subset: Sequence[str] | None = None,
  chunk_size: int = 0,
  mask: dict | None = None,
  linearize: bool = False,
  matmul_precision: str | None = "highest",
) -> tuple[dict, MatVec]:
  r"""``(grad_S L, v -> H_SS v)``: :func:`make_hvp` and the gradient at the same point.

  With ``linearize`` the gradient is the primal output of ``jax.linearize``
  (free); otherwise it is one more gradient pass, which XLA drops when unused.
  With a ``mask`` the gradient is masked like the products.
  """
  grad_fn = make_grad(loss_fn, params, batch, subset, chunk_size)
  point = select(params, subset)

  def precision():
    if matmul_precision is None:
      return contextlib.nullcontext()
    return jax.default_matmul_precision(matmul_precision)

  if linearize:
    # The tangent map is traced here, so the precision is recorded in it.
    with precision():
      grad, hvp = jax.linearize(grad_fn, point)
  else:
    with precision():
      grad = grad_fn(point)

    def hvp(v):
      with precision():
        return jax.jvp(grad_fn, (point,), (v,))[1]

  if mask is None:
    return grad, hvp

  def masked_hvp(v):
    hv = hvp(jax.tree.map(jnp.multiply, mask, v))
    return jax.tree.map(jnp.multiply, mask, hv)

  return jax.tree.map(jnp.multiply, mask, grad), masked_hvp
