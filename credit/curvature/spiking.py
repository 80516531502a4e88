r"""Two definitions of the curvature of a spiking network's loss.

A spiking loss is piecewise constant in the weights (spikes are 0 or 1), so its
Hessian is zero almost everywhere and infinite on the switching surfaces.
Two operators stand in for it, both as ``v -> Av`` over the measured subset,
built by :func:`credit.curvature.hvp.make_hvp` (forward-over-reverse):

1. **The Jacobian of the surrogate-gradient map** (:func:`surrogate_gradient_jvp`):
   :math:`A = \partial g / \partial \theta` with :math:`g(\theta)` the surrogate
   gradient (BPTT with :math:`H' := \psi`). Two readings, by
   :attr:`credit.models.lif.Surrogate.second_order`:

   * ``"frozen"`` (default): spikes held fixed, as they are under any small
     enough change of the weights: the true, almost-everywhere Jacobian of the
     map that training follows (``theta <- theta - eta g(theta)``); it is **not
     symmetric** in general: report :math:`\lambda_{max}` of its symmetric part
     and its eigenvalue of largest real part (:func:`jacobian_extremes`: Lanczos
     on :math:`(A + A^\top)/2`, Arnoldi on ``A``), not Lanczos on ``A`` itself;
   * ``"surrogate"``: :math:`H' := \psi` and :math:`H'' := \psi'` at every
     order; the Hessian of a smooth network matching ``(H, psi, psi')`` at the
     evaluated points: **symmetric** (Lanczos applies).

2. **The Hessian of a smoothed proxy** (:func:`smoothed_loss`): ``H`` replaced
   by :math:`\sigma(x / \tau)` at temperature :math:`\tau` (in units of ``v_th``)
   in the forward pass itself; an ordinary Hessian of an ordinary smooth loss,
   symmetric. As :math:`\tau \to 0` the proxy's forward pass tends to the spiking
   one.

Each returned loss has the ``(params, batch) -> scalar`` form that
:func:`credit.curvature.hvp.make_hvp`, :mod:`credit.curvature.lanczos` and the
curvature probe consume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from credit import losses
from credit.curvature import hvp
from credit.models import lif
from credit.models.lif import LIFSpec
from credit.models.rnn import Params
from credit.tasks.base import Batch, Task

import jax
import jax.numpy as jnp

PyTree = Any

# The definitions the curvature probe offers (``config.curvature.spiking_definition``):
# "smoothed" (:func:`smoothed_hvp`, Lanczos) or "surrogate" (:func:`surrogate_gradient_jvp`
# with spikes frozen: the symmetric part's lambda_max and the largest real eigenvalue).
SPIKING_DEFINITIONS = ("smoothed", "surrogate")
# The smoothed proxy's default temperature (units of v_th): units within about 0.1 v_th
# of threshold are the only ones whose proxy "spike" is graded, so its forward pass stays
# close to the spiking network's.
DEFAULT_TEMPERATURE = 0.1


def spiking_loss(
  spec: LIFSpec, task: Task, reg_l2: float = 0.0
) -> Callable[[Params, Batch], jax.Array]:
  """``(params, batch) -> data loss + L2`` of the spiking network ``spec``.

  Its ``jax.grad`` is the surrogate gradient; with ``spec.proxy_temperature > 0``
  it is the smoothed proxy's loss.
  """

  def total_loss(params: Params, batch: Batch) -> jax.Array:
    y = lif.outputs(params, spec, batch.inputs)
    return task.loss(y, batch) + losses.l2_penalty(params, reg_l2)

  return total_loss


def smoothed_loss(
  spec: LIFSpec, task: Task, reg_l2: float, temperature: float
) -> Callable[[Params, Batch], jax.Array]:
  r"""The smoothed proxy's loss: :math:`z = \sigma(x / \tau)` with ``tau = temperature``."""
  return spiking_loss(lif.smoothed(spec, temperature), task, reg_l2)


def surrogate_gradient_jvp(
  spec: LIFSpec,
  task: Task,
  reg_l2: float,
  params: Params,
  batch: Batch,
  subset: Sequence[str] | None = None,
  chunk_size: int = 0,
  mask: dict | None = None,
  second_order: str = "frozen",
) -> hvp.MatVec:
  r"""``v -> (d g / d theta) v``, the Jacobian of the surrogate-gradient map at ``params``.

  Args:
    spec: the spiking network (its surrogate defines ``g``).
    task: the task (its loss).
    reg_l2: L2 coefficient (its exact curvature is included).
    params: the point.
    batch: a fixed batch.
    subset: measured parameter names (``None``: all).
    chunk_size: examples per chunk (see :func:`credit.curvature.hvp.make_grad`).
    mask: optional 0/1 pytree restricting to free coordinates.
    second_order: ``"frozen"`` (the map training follows; not symmetric) or
      ``"surrogate"`` (symmetric), see the module docstring.

  Returns:
    The operator, with the structure of ``select(params, subset)``.
  """
  if second_order not in lif.SECOND_ORDERS:
    raise ValueError(f"second_order must be one of {lif.SECOND_ORDERS}, got {second_order!r}")
  if spec.proxy_temperature > 0:
    raise ValueError("surrogate_gradient_jvp needs a spiking spec (proxy_temperature = 0)")
  spec = spec._replace(surrogate=spec.surrogate._replace(second_order=second_order))
  return hvp.make_hvp(
    spiking_loss(spec, task, reg_l2), params, batch, subset, chunk_size, mask=mask
  )


def smoothed_hvp(
  spec: LIFSpec,
  task: Task,
  reg_l2: float,
  temperature: float,
  params: Params,
  batch: Batch,
  subset: Sequence[str] | None = None,
  chunk_size: int = 0,
  mask: dict | None = None,
) -> hvp.MatVec:
  """``v -> H v`` of the smoothed proxy's loss (:func:`smoothed_loss`), symmetric."""
  loss_fn = smoothed_loss(spec, task, reg_l2, temperature)
  return hvp.make_hvp(loss_fn, params, batch, subset, chunk_size, mask=mask)


class JacobianExtremes(NamedTuple):
  """Extreme eigenvalues of a non-symmetric operator ``A`` (e.g. the frozen surrogate Jacobian).

  Attributes:
    sym_lambda_max: the largest eigenvalue of the symmetric part :math:`(A + A^\\top)/2`
      (Lanczos).
    max_real: the largest real part of an eigenvalue of ``A`` (Arnoldi Ritz values).
  """

  sym_lambda_max: jax.Array
  max_real: jax.Array


def symmetric_part(matvec: hvp.MatVec, point: PyTree) -> hvp.MatVec:
  r"""``v -> (A + A^\top) v / 2`` for a linear ``matvec`` (``A^\top`` by ``jax.linear_transpose``).

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``point``.
    point: a pytree with the shape and dtype of ``A``'s input (its values are unused).
  """
  transposed = jax.linear_transpose(matvec, point)

  def apply(v):
    return jax.tree.map(lambda a, b: 0.5 * (a + b), matvec(v), transposed(v)[0])

  return apply


def max_real_eigenvalue(
  matvec: hvp.MatVec, v0: PyTree, num_steps: int, mask: PyTree | None = None
) -> jax.Array:
  r""":math:`\max \mathrm{Re}\,\theta` over the Ritz values :math:`\theta` of ``num_steps``
  Arnoldi steps (:func:`credit.curvature.krylov.arnoldi`; exact with ``num_steps`` equal
  to the number of free coordinates)."""
  from credit.curvature.krylov import arnoldi

  ritz = jnp.linalg.eigvals(arnoldi(matvec, v0, num_steps, mask=mask).hessenberg)
  return jnp.max(jnp.real(ritz)).astype(jax.tree.leaves(v0)[0].dtype)


def jacobian_extremes(
  matvec: hvp.MatVec, point: PyTree, v0: PyTree, num_steps: int
) -> JacobianExtremes:
  r"""The top eigenvalue of :math:`(A + A^\top)/2` and :math:`\max \mathrm{Re}\,\lambda(A)`.

  :math:`A^\top` comes from ``jax.linear_transpose`` of the (linear) ``matvec``,
  so ``A`` may be any JAX-traceable linear map, such as
  :func:`surrogate_gradient_jvp`'s. With ``num_steps`` equal to the dimension
  both are exact; fewer steps give the usual Krylov estimates.

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``point``.
    point: a pytree with the shape and dtype of ``A``'s input (its values are unused).
    v0: the Krylov start vector (nonzero).
    num_steps: Lanczos and Arnoldi steps (static).

  Returns:
    A :class:`JacobianExtremes`.
  """
  from credit.curvature.lanczos import lanczos_top_k

  top = lanczos_top_k(symmetric_part(matvec, point), v0, num_steps, 1)
  return JacobianExtremes(
    sym_lambda_max=top.eigenvalues[0],
    max_real=max_real_eigenvalue(matvec, v0, num_steps).astype(top.eigenvalues.dtype),
  )
