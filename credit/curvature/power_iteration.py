r"""Power iteration with the stopping rule of the reference code (BiolHessRNN).

Starting from :math:`v_0 \sim \mathcal{N}(0, I)`, normalized,

.. math::

  \lambda_k = \| A v_{k-1} \|, \qquad v_k = A v_{k-1} / \lambda_k,

until :math:`|\lambda_k - \lambda_{k-1}| \le \mathrm{tol}` (absolute, 1e-6 in
the reference, "similar to PyHessian but not divided by lambda") or
``max_matvecs`` products. :math:`\lambda_k` converges to the **magnitude** of
the largest-magnitude eigenvalue; the signed Rayleigh quotient
:math:`v_{k-1}^\top A v_{k-1}` of the last iterate is returned too. Kept as
the baseline and cross-check for :func:`~credit.curvature.lanczos.lanczos_top_k`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.curvature.lanczos import HIGHEST

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any


class PowerIterationResult(NamedTuple):
  """Output of :func:`power_iteration`.

  Attributes:
    magnitude: :math:`\\|A v\\|` at the last step (the reference's lambda_max).
    rayleigh: signed Rayleigh quotient :math:`v^\\top A v` of the last iterate.
    num_matvecs: number of products used (int32).
    eigenvector: the last iterate :math:`v`, shaped like ``v0``.
  """

  magnitude: jax.Array
  rayleigh: jax.Array
  num_matvecs: jax.Array
  eigenvector: PyTree


def power_iteration(
  matvec: Callable[[PyTree], PyTree],
  v0: PyTree,
  tol: float = 1e-6,
  max_matvecs: int = 500,
) -> PowerIterationResult:
  """Largest-magnitude eigenvalue by power iteration (``lax.while_loop``).

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``v0``.
    v0: start vector (normalized here).
    tol: absolute tolerance on the change of ``||A v||`` between steps.
    max_matvecs: cap on the number of products.

  Returns:
    A :class:`PowerIterationResult`.
  """
  if max_matvecs < 1:
    raise ValueError(f"max_matvecs must be >= 1, got {max_matvecs}")
  flat_v0, unravel = ravel_pytree(v0)
  dtype = flat_v0.dtype
  tiny = jnp.finfo(dtype).tiny

  def op(x):
    return ravel_pytree(matvec(unravel(x)))[0]

  def cond(state):
    _, lam_prev, lam, _, _, count = state
    return (count < max_matvecs) & (jnp.abs(lam - lam_prev) > tol)

  def body(state):
    v, _, lam, _, _, count = state
    hv = op(v)
    rq = jnp.dot(v, hv, precision=HIGHEST)
    lam_new = jnp.linalg.norm(hv)
    return hv / jnp.maximum(lam_new, tiny), lam, lam_new, rq, v, count + 1

  v = flat_v0 / jnp.linalg.norm(flat_v0)
  inf = jnp.asarray(jnp.inf, dtype)
  zero = jnp.zeros((), dtype)
  # (next iterate, previous lambda, lambda, Rayleigh quotient, its iterate, count):
  # lambda starts at inf so that the first comparison always continues.
  state = (v, zero, inf, zero, v, jnp.zeros((), jnp.int32))
  _, _, lam, rq, v_last, count = jax.lax.while_loop(cond, body, state)
  return PowerIterationResult(
    magnitude=lam, rayleigh=rq, num_matvecs=count, eigenvector=unravel(v_last)
  )
