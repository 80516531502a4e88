r"""Lanczos tridiagonalization with full reorthogonalization, jit- and vmap-able.

For a symmetric operator :math:`A` on :math:`\mathbb{R}^n` and a start vector
:math:`v_0`, ``m`` steps build an orthonormal Krylov basis
:math:`Q = [q_1 .. q_m]` (rows of ``basis``) and the tridiagonal
:math:`T = Q^\top A Q` with diagonal :math:`\alpha_j = q_j^\top A q_j` and
off-diagonal :math:`\beta_j = \| w_j \|`, where

.. math::

  w_j = (I - Q Q^\top)(A q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}),
  \qquad q_{j+1} = w_j / \beta_j .

The projection :math:`I - QQ^\top` is applied twice ("twice is enough",
Kahan-Parlett), with matmuls at ``Precision.HIGHEST`` so that TF32 or bf16
passes on accelerators cannot destroy orthogonality. The eigenvalues of
:math:`T` (Ritz values) approximate the extreme eigenvalues of :math:`A`
first; each one lies within its residual bound
:math:`|\beta_m s_{m,i}|` of a true eigenvalue.

Breakdown. If :math:`\beta_j \approx 0` the Krylov space is invariant and no
new direction follows from the recurrence. The loop cannot branch or raise
under ``jit``, so the step is masked: :math:`\beta_j` is recorded as exactly 0
and :math:`q_{j+1}` is a fresh pseudo-random vector orthogonalized against
:math:`Q`. :math:`T` becomes block diagonal, every Ritz value is still a
Rayleigh-Ritz value of :math:`A` on an orthonormal basis (so no spurious
eigenvalues appear), and for quadrature the new blocks carry zero weight
(their eigenvectors have zero first component).

The step count is static (``lax.scan``), so the whole loop compiles once and
vmaps over seeds (batched start vectors and operators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
HIGHEST = jax.lax.Precision.HIGHEST


class LanczosResult(NamedTuple):
  """Output of :func:`lanczos_tridiag`.

  Attributes:
    alphas: diagonal of ``T``, ``[m]``.
    betas: off-diagonal of ``T``, ``[m - 1]`` (0 where the recurrence broke down).
    basis: orthonormal Lanczos vectors as rows, ``[m, n]`` (flat).
    residual: ``beta_m``, the norm of the part of ``A q_m`` outside the basis.
  """

  alphas: jax.Array
  betas: jax.Array
  basis: jax.Array
  residual: jax.Array


class TopK(NamedTuple):
  """Output of :func:`lanczos_top_k`.

  Attributes:
    eigenvalues: the ``k`` largest Ritz values, descending (signed), ``[k]``.
    eigenvectors: Ritz vectors with the structure of ``v0`` and a leading
      ``k`` axis, or ``None`` unless requested.
    error_bounds: ``|beta_m s_{m,i}|``: a true eigenvalue of ``A`` lies within
      this distance of each Ritz value, ``[k]``.
    alphas, betas: the tridiagonal (for quadrature).
  """

  eigenvalues: jax.Array
  eigenvectors: PyTree | None
  error_bounds: jax.Array
  alphas: jax.Array
  betas: jax.Array


def _flat_operator(matvec: Callable[[PyTree], PyTree], unravel) -> Callable[[jax.Array], jax.Array]:
  def flat(x):
    return ravel_pytree(matvec(unravel(x)))[0]

  return flat


def _orthogonalize(w: jax.Array, basis: jax.Array) -> jax.Array:
  """``w - Q^T Q w`` done twice; rows of ``basis`` not yet filled are zero."""
  for _ in range(2):
    w = w - jnp.dot(jnp.dot(basis, w, precision=HIGHEST), basis, precision=HIGHEST)
  return w


def lanczos_tridiag(
  matvec: Callable[[PyTree], PyTree],
  v0: PyTree,
  num_steps: int,
  breakdown_tol: float | None = None,
) -> LanczosResult:
  r"""Runs ``num_steps`` Lanczos steps with full reorthogonalization.

  Args:
    matvec: the symmetric operator, ``v -> A v`` on pytrees shaped like ``v0``.
    v0: start vector (pytree; need not be normalized, must be nonzero).
    num_steps: number of matvecs ``m``; static, ``1 <= m <= n``.
    breakdown_tol: :math:`\beta_j \le \mathrm{tol} \cdot \max_i \|A q_i\|`
      counts as breakdown; default :math:`\sqrt{\epsilon}` of the dtype.

  Returns:
    A :class:`LanczosResult` (flat basis).

  Raises:
    ValueError: if ``num_steps`` is not in ``[1, n]`` (beyond ``n`` the basis
      cannot stay orthonormal; shapes are static so this is known at trace time).
  """
  flat_v0, unravel = ravel_pytree(v0)
  n = flat_v0.size
  if not 1 <= num_steps <= n:
    raise ValueError(f"num_steps={num_steps} must be between 1 and the operator dimension n={n}")
  dtype = flat_v0.dtype
  tol = jnp.sqrt(jnp.finfo(dtype).eps) if breakdown_tol is None else breakdown_tol
  op = _flat_operator(matvec, unravel)
  tiny = jnp.finfo(dtype).tiny
  # Fixed key for the replacement directions after a breakdown: any vector not
  # in the current span works, and a fixed one keeps runs reproducible.
  fresh_key = jax.random.key(0x1A2C)

  def body(carry, j):
    basis, q, q_prev, beta_prev, scale = carry
    basis = basis.at[j].set(q)
    w = op(q)
    scale = jnp.maximum(scale, jnp.linalg.norm(w))
    alpha = jnp.dot(q, w, precision=HIGHEST)
    w = _orthogonalize(w - alpha * q - beta_prev * q_prev, basis)
    beta = jnp.linalg.norm(w)
    broke = beta <= tol * scale
    fresh = _orthogonalize(jax.random.normal(jax.random.fold_in(fresh_key, j), (n,), dtype), basis)
    fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), tiny)
    q_next = jnp.where(broke, fresh, w / jnp.where(broke, 1.0, beta))
    beta = jnp.where(broke, jnp.zeros_like(beta), beta)
    return (basis, q_next, q, beta, scale), (alpha, beta)

  q0 = flat_v0 / jnp.linalg.norm(flat_v0)
  zero = jnp.zeros((), dtype)
  init = (jnp.zeros((num_steps, n), dtype), q0, jnp.zeros_like(q0), zero, zero)
  (basis, *_), (alphas, betas) = jax.lax.scan(body, init, jnp.arange(num_steps))
  return LanczosResult(alphas=alphas, betas=betas[:-1], basis=basis, residual=betas[-1])


def tridiagonal(alphas: jax.Array, betas: jax.Array) -> jax.Array:
  """The dense symmetric tridiagonal matrix ``T`` from its diagonals."""
  return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def lanczos_top_k(
  matvec: Callable[[PyTree], PyTree],
  v0: PyTree,
  num_steps: int,
  k: int,
  return_vectors: bool = False,
) -> TopK:
  r"""The ``k`` largest (algebraic, signed) eigenvalues of a symmetric operator.

  Runs :func:`lanczos_tridiag` and diagonalizes :math:`T = S \Theta S^\top`;
  the Ritz values :math:`\theta_i` are returned in descending order, and the
  Ritz vectors :math:`Q^\top s_i` on request.

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``v0`` (e.g. :func:`make_hvp`).
    v0: start vector (random, e.g. Gaussian from a per-seed key).
    num_steps: Lanczos steps = matvecs (static, ``k <= num_steps <= n``).
    k: number of eigenvalues.
    return_vectors: also return the Ritz vectors (pytree with a leading ``k`` axis).

  Returns:
    A :class:`TopK`.
  """
  if not 1 <= k <= num_steps:
    raise ValueError(f"k={k} must be between 1 and num_steps={num_steps}")
  res = lanczos_tridiag(matvec, v0, num_steps)
  theta, s = jnp.linalg.eigh(tridiagonal(res.alphas, res.betas))
  theta, s = theta[::-1][:k], s[:, ::-1][:, :k]
  bounds = jnp.abs(res.residual * s[-1])
  vectors = None
  if return_vectors:
    _, unravel = ravel_pytree(v0)
    flat = jnp.dot(s.T, res.basis, precision=HIGHEST)
    vectors = jax.vmap(unravel)(flat)
  return TopK(
    eigenvalues=theta,
    eigenvectors=vectors,
    error_bounds=bounds,
    alphas=res.alphas,
    betas=res.betas,
  )
