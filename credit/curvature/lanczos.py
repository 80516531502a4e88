r"""Lanczos tridiagonalization with full reorthogonalization, jit- and vmap-able.

For a symmetric operator :math:`A` on :math:`\mathbb{R}^n` and a start vector
:math:`v_0`, ``m`` steps build an orthonormal Krylov basis
:math:`Q = [q_1 .. q_m]` (rows of ``basis``) and the tridiagonal
:math:`T = Q^\top A Q` with diagonal :math:`\alpha_j = q_j^\top A q_j` and
off-diagonal :math:`\beta_j = \| w_j \|`, where

.. math::

  w_j = (I - Q Q^\top)(A q_j), \qquad q_{j+1} = w_j / \beta_j .

This is the Arnoldi loop of :mod:`credit.curvature.krylov` (projection done
twice at ``Precision.HIGHEST``, masked restarts after a breakdown, restarts in
the free subspace of an optional ``mask``) read as a tridiagonal; that module
says why the loop is ours and not matfree's. The eigenvalues of :math:`T`
(Ritz values) approximate the extreme eigenvalues of :math:`A` first; each one
lies within its residual bound :math:`|\beta_m s_{m,i}|` of a true eigenvalue.
After a breakdown :math:`T` is block diagonal, every Ritz value is still a
Rayleigh-Ritz value of :math:`A` on an orthonormal basis, and for quadrature the
new blocks carry zero weight (their eigenvectors have zero first component).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.curvature.krylov import HIGHEST, arnoldi

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any


class LanczosResult(NamedTuple):
  """Output of :func:`lanczos_tridiag`.

  Attributes:
    alphas: diagonal of ``T``, ``[m]``.
    betas: off-diagonal of ``T``, ``[m - 1]`` (0 where the recurrence broke down).
    basis: orthonormal Lanczos vectors as rows, ``[m, n]`` (flat).
    residual: ``beta_m``, the norm of the part of ``A q_m`` outside the basis.
    steps: the steps taken (``m``; fewer when a tolerance stopped the loop, and
      then ``alphas``, ``betas`` and ``basis`` are zero beyond them).
  """

  alphas: jax.Array
  betas: jax.Array
  basis: jax.Array
  residual: jax.Array
  steps: jax.Array | int


class TopK(NamedTuple):
  """Output of :func:`lanczos_top_k`.

  Attributes:
    eigenvalues: the ``k`` largest Ritz values, descending (signed), ``[k]``.
    eigenvectors: Ritz vectors with the structure of ``v0`` and a leading
      ``k`` axis, or ``None`` unless requested.
    error_bounds: ``|beta_m s_{m,i}|``: a true eigenvalue of ``A`` lies within
      this distance of each Ritz value, ``[k]``.
    alphas, betas: the tridiagonal (for quadrature).
    steps: the Lanczos steps (matvecs) taken.
  """

  eigenvalues: jax.Array
  eigenvectors: PyTree | None
  error_bounds: jax.Array
  alphas: jax.Array
  betas: jax.Array
  steps: jax.Array | int


def lanczos_tridiag(
  matvec: Callable[[PyTree], PyTree],
  v0: PyTree,
  num_steps: int,
  breakdown_tol: float | None = None,
  mask: PyTree | None = None,
  converged: Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None = None,
) -> LanczosResult:
  r"""Runs ``num_steps`` Lanczos steps with full reorthogonalization.

  The Arnoldi loop of :func:`credit.curvature.krylov.arnoldi` on a symmetric
  operator: :math:`T` is the diagonal and sub-diagonal of its Hessenberg.

  Args:
    matvec: the symmetric operator, ``v -> A v`` on pytrees shaped like ``v0``;
      with ``mask``, the masked operator :math:`PAP`.
    v0: start vector (pytree; need not be normalized, must be nonzero).
    num_steps: number of matvecs ``m``; static, ``1 <= m <= n`` (``sum(mask)``).
    breakdown_tol: :math:`\beta_j \le \mathrm{tol} \cdot \max_i \|A q_i\|`
      counts as breakdown; default :math:`\sqrt{\epsilon}` of the dtype.
    mask: optional 0/1 pytree like ``v0``: the start and the restarts after a
      breakdown stay in its free subspace, so masked coordinates never enter
      with their eigenvalue 0.
    converged: optional ``(alphas, betas, beta_m, m) -> bool`` asked after each
      step ``m`` (the tridiagonal so far, zero beyond ``m``): the first ``True``
      stops the loop, which takes at most ``num_steps`` steps.

  Returns:
    A :class:`LanczosResult` (flat basis).

  Raises:
    ValueError: if ``num_steps`` is not in ``[1, n]`` (``[1, sum(mask)]`` for a
      concrete mask): beyond it the basis cannot stay orthonormal.
  """
  stop = None
  if converged is not None:

    def stop(h, beta, m):
      return converged(jnp.diagonal(h), jnp.diagonal(h, -1), beta, m)

  res = arnoldi(matvec, v0, num_steps, breakdown_tol, mask, stop)
  h = res.hessenberg
  return LanczosResult(
    alphas=jnp.diagonal(h),
    betas=jnp.diagonal(h, -1),
    basis=res.basis,
    residual=res.residual,
    steps=res.steps,
  )


def tridiagonal(alphas: jax.Array, betas: jax.Array) -> jax.Array:
  """The dense symmetric tridiagonal matrix ``T`` from its diagonals."""
  return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def ritz_top_k(
  alphas: jax.Array, betas: jax.Array, residual: jax.Array, steps: jax.Array | int, k: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""The ``k`` largest Ritz pairs of the leading ``steps`` x ``steps`` block of ``T``.

  ``T`` may be padded beyond ``steps`` (a Lanczos run stopped early): the padded
  diagonal is replaced by a value below Gershgorin's lower bound of the block,
  :math:`\min_i (\alpha_i - |\beta_{i-1}| - |\beta_i|)`, so every padded eigenvalue
  lies below every Ritz value and the top ``k <= steps`` pairs are the block's
  (their vectors zero on the padding). With ``steps`` the full size, ``T`` itself.

  Returns:
    ``(theta [k], s [m, k], bounds [k])``: Ritz values (descending), the
    eigenvectors of ``T`` and the residual bounds :math:`|\beta_m s_{m,i}|`.
  """
  m = alphas.shape[0]
  used = jnp.arange(m) < steps
  off = jnp.abs(betas)
  radius = jnp.concatenate([off, jnp.zeros((1,), off.dtype)])
  radius = radius + jnp.concatenate([jnp.zeros((1,), off.dtype), off])
  low = jnp.min(jnp.where(used, alphas - radius, jnp.inf))
  padded = jnp.where(used, alphas, low - 1.0 - jnp.abs(low))
  theta, s = jnp.linalg.eigh(tridiagonal(padded, betas))
  theta, s = theta[::-1][:k], s[:, ::-1][:, :k]
  last = jax.lax.dynamic_index_in_dim(s, jnp.asarray(steps) - 1, axis=0, keepdims=False)
  return theta, s, jnp.abs(residual * last)


def converged_top_k(k: int, tol: float) -> Callable[..., jax.Array]:
  r"""A stopping test for :func:`lanczos_tridiag`: the ``k`` largest Ritz values are within
  ``tol`` of true eigenvalues, relative to the largest.

  Stops after step ``m >= k`` when every bound :math:`|\beta_m s_{m,i}| \le`
  ``tol`` :math:`\cdot |\theta_1|`, :math:`i \le k`. A breakdown
  (:math:`\beta_m = 0`) does not count: the loop restarts and goes on searching.
  """

  def converged(alphas, betas, beta, m):
    theta, _, bounds = ritz_top_k(alphas, betas, beta, m, k)
    scale = jnp.maximum(jnp.abs(theta[0]), jnp.finfo(theta.dtype).tiny)
    return (m >= k) & (beta > 0) & jnp.all(bounds <= tol * scale)

  return converged


def lanczos_top_k(
  matvec: Callable[[PyTree], PyTree],
  v0: PyTree,
  num_steps: int,
  k: int,
  return_vectors: bool = False,
  mask: PyTree | None = None,
  tol: float = 0.0,
) -> TopK:
  r"""The ``k`` largest (algebraic, signed) eigenvalues of a symmetric operator.

  Runs :func:`lanczos_tridiag` and diagonalizes :math:`T = S \Theta S^\top`;
  the Ritz values :math:`\theta_i` are returned in descending order, and the
  Ritz vectors :math:`Q^\top s_i` on request.

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``v0`` (e.g. :func:`make_hvp`).
    v0: start vector (random, e.g. Gaussian from a per-seed key).
    num_steps: Lanczos steps = matvecs (static, ``k <= num_steps <= n``); with
      ``tol``, the most steps.
    k: number of eigenvalues.
    return_vectors: also return the Ritz vectors (pytree with a leading ``k`` axis).
    mask: optional 0/1 pytree like ``v0`` for a masked operator :math:`PAP`: the
      Ritz values are those of :math:`A` on the free coordinates (see
      :func:`lanczos_tridiag`).
    tol: 0 (default): exactly ``num_steps`` steps. Otherwise stop as soon as the
      ``k`` residual bounds are at most ``tol`` times :math:`|\theta_1|`
      (:func:`converged_top_k`); the first steps of a run are those of a shorter
      one, so the values are those of a fixed-step run of ``steps`` steps.

  Returns:
    A :class:`TopK`.
  """
  if not 1 <= k <= num_steps:
    raise ValueError(f"k={k} must be between 1 and num_steps={num_steps}")
  if tol < 0:
    raise ValueError(f"tol must be >= 0, got {tol}")
  stop = converged_top_k(k, tol) if tol > 0 else None
  res = lanczos_tridiag(matvec, v0, num_steps, mask=mask, converged=stop)
  theta, s, bounds = ritz_top_k(res.alphas, res.betas, res.residual, res.steps, k)
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
    steps=res.steps,
  )
