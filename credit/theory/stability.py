r"""Linear stability of a rule's update map, and the curvature bound it predicts.

With learning rate :math:`\eta` the linearized update map is
:math:`\delta_{k+1} = (I - \eta J)\,\delta_k` (:mod:`credit.theory.update_map`).
A point is linearly stable iff every eigenvalue :math:`\mu = 1 - \eta\theta` of
:math:`I - \eta J` (:math:`\theta` an eigenvalue of :math:`J`) has
:math:`|\mu| < 1`; for real :math:`\theta`, iff :math:`0 < \eta\theta < 2`.

Exact GD has :math:`J = H`, so it can stay only where
:math:`\lambda_{max}(H) < 2/\eta`. Let :math:`v` be the top Hessian eigenvector,
:math:`Hv = \lambda v`, and define the rule's **alignment factor** along it

.. math::

  c = \frac{v^\top J v}{v^\top H v}.

If :math:`v` is also an eigenvector of :math:`J` (e.g. :math:`J = MH` with
:math:`Mv = cv`), then :math:`Jv = c\lambda v` and that direction is stable iff
:math:`0 < \eta c \lambda < 2`, i.e.

.. math::

  \lambda_{max} < \frac{2}{\eta c},

a bound looser than :math:`2/\eta` when :math:`c < 1`. In general :math:`c` is
the Rayleigh-quotient estimate of :math:`J`'s gain along :math:`v`, and the
exact criterion is the spectral radius of :math:`I - \eta J`, which
:func:`update_map_spectrum` estimates by Arnoldi.

Everything here is jit- and vmap-able with static step counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
MatVec = Callable[[PyTree], PyTree]
HIGHEST = jax.lax.Precision.HIGHEST


class ArnoldiResult(NamedTuple):
  """Output of :func:`arnoldi`.

  Attributes:
    hessenberg: the upper Hessenberg :math:`H_m = Q^\\top A Q`, ``[m, m]``.
    basis: orthonormal Arnoldi vectors :math:`Q` as rows, ``[m, n]`` (flat).
    residual: :math:`h_{m+1,m}`, the norm of the part of :math:`A q_m` outside
      the basis (0 when the Krylov space is invariant).
  """

  hessenberg: jax.Array
  basis: jax.Array
  residual: jax.Array


def _project_out(w: jax.Array, basis: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Classical Gram-Schmidt done twice; returns the coefficients and the remainder."""
  coef = jnp.zeros(basis.shape[0], w.dtype)
  for _ in range(2):
    c = jnp.dot(basis, w, precision=HIGHEST)
    w = w - jnp.dot(c, basis, precision=HIGHEST)
    coef = coef + c
  return coef, w


def arnoldi(
  matvec: MatVec,
  v0: PyTree,
  num_steps: int,
  breakdown_tol: float | None = None,
) -> ArnoldiResult:
  r"""``num_steps`` Arnoldi steps with full (twice) reorthogonalization.

  Builds an orthonormal basis :math:`q_1 .. q_m` of the Krylov space of a
  general (non-symmetric) operator :math:`A` and
  :math:`h_{ij} = q_i^\top A q_j`, :math:`A q_j = \sum_{i \le j+1} h_{ij} q_i`.
  The eigenvalues of :math:`H_m` (Ritz values) approximate the extreme
  eigenvalues of :math:`A` first and equal all of them when ``m = n``.

  On breakdown (:math:`h_{j+1,j} \le \mathrm{tol} \cdot \max \|A q\|`, an
  invariant subspace) the sub-diagonal entry is set to 0 and the next vector is a
  fixed pseudo-random direction orthogonalized against the basis; :math:`H_m`
  stays the matrix of :math:`A` compressed to an orthonormal basis, so its
  eigenvalues stay Ritz values (the same masking as
  :func:`credit.curvature.lanczos.lanczos_tridiag`).

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``v0``.
    v0: start vector (nonzero; normalized here).
    num_steps: ``m`` (static), ``1 <= m <= n``.
    breakdown_tol: default :math:`\sqrt{\epsilon}` of the dtype.

  Returns:
    An :class:`ArnoldiResult`.
  """
  flat_v0, unravel = ravel_pytree(v0)
  n = flat_v0.size
  if not 1 <= num_steps <= n:
    raise ValueError(f"num_steps={num_steps} must be between 1 and the dimension n={n}")
  dtype = flat_v0.dtype
  tol = jnp.sqrt(jnp.finfo(dtype).eps) if breakdown_tol is None else breakdown_tol
  tiny = jnp.finfo(dtype).tiny
  fresh_key = jax.random.key(0xA2D1)

  def op(x):
    return ravel_pytree(matvec(unravel(x)))[0]

  def body(carry, j):
    basis, q, scale = carry
    basis = basis.at[j].set(q)
    w = op(q)
    scale = jnp.maximum(scale, jnp.linalg.norm(w))
    column, w = _project_out(w, basis)
    beta = jnp.linalg.norm(w)
    broke = beta <= tol * scale
    _, fresh = _project_out(jax.random.normal(jax.random.fold_in(fresh_key, j), (n,), dtype), basis)
    fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), tiny)
    q_next = jnp.where(broke, fresh, w / jnp.where(broke, 1.0, beta))
    beta = jnp.where(broke, jnp.zeros_like(beta), beta)
    return (basis, q_next, scale), (column, beta)

  q0 = flat_v0 / jnp.linalg.norm(flat_v0)
  init = (jnp.zeros((num_steps, n), dtype), q0, jnp.zeros((), dtype))
  (basis, _, _), (columns, betas) = jax.lax.scan(body, init, jnp.arange(num_steps))
  # columns[j] holds h_{:, j} (zero below row j); the sub-diagonal comes from betas.
  hess = columns.T + jnp.diag(betas[:-1], -1)
  return ArnoldiResult(hessenberg=hess, basis=basis, residual=betas[-1])


class UpdateMapSpectrum(NamedTuple):
  """Output of :func:`update_map_spectrum`.

  Attributes:
    rule_eigs: Ritz values :math:`\\theta` of :math:`J` (complex, ``[m]``).
    map_eigs: :math:`\\mu = 1 - \\eta\\theta`, Ritz values of :math:`I - \\eta J`.
    radius: :math:`\\max |\\mu|` (the map is locally contracting iff < 1).
    min_real: :math:`\\min \\mathrm{Re}\\,\\mu` (< -1: the oscillatory, edge-of-stability
      side is unstable).
    max_real_rule: :math:`\\max \\mathrm{Re}\\,\\theta`, to compare with :math:`2/\\eta`.
  """

  rule_eigs: jax.Array
  map_eigs: jax.Array
  radius: jax.Array
  min_real: jax.Array
  max_real_rule: jax.Array


def update_map_spectrum(
  jvp: MatVec, v0: PyTree, eta: jax.Array | float, num_steps: int
) -> UpdateMapSpectrum:
  r"""Ritz values of :math:`I - \eta J` by Arnoldi on :math:`J`.

  :math:`I - \eta J` and :math:`J` share Krylov spaces, so Arnoldi runs on
  :math:`J` (better conditioned: the identity does not swamp :math:`\eta J`)
  and :math:`\mu = 1 - \eta\theta`. The extreme :math:`\theta` converge first,
  which are the ones that decide stability on the oscillatory side
  (:math:`\mu < -1`). Near :math:`\mu = 1` the flat directions crowd, so
  ``radius`` is about 1 whenever the extreme side is stable.

  Args:
    jvp: ``v -> J v`` (e.g. :func:`credit.theory.update_map.make_rule_jvp`).
    v0: start vector.
    eta: learning rate.
    num_steps: Arnoldi steps (static).

  Returns:
    An :class:`UpdateMapSpectrum`.
  """
  res = arnoldi(jvp, v0, num_steps)
  theta = jnp.linalg.eigvals(res.hessenberg)
  mu = 1.0 - eta * theta
  real = res.hessenberg.dtype
  return UpdateMapSpectrum(
    rule_eigs=theta,
    map_eigs=mu,
    radius=jnp.max(jnp.abs(mu)).astype(real),
    min_real=jnp.min(jnp.real(mu)).astype(real),
    max_real_rule=jnp.max(jnp.real(theta)).astype(real),
  )


def _vdot(a: PyTree, b: PyTree) -> jax.Array:
  return sum(
    jnp.vdot(x, y, precision=HIGHEST)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def alignment_factor(jvp: MatVec, hvp: MatVec, v: PyTree) -> jax.Array:
  r"""The rule's alignment factor along ``v``: :math:`c = v^\top J v / v^\top H v`.

  Args:
    jvp: ``v -> J v``, the rule's Jacobian.
    hvp: ``v -> H v``, the Hessian of the exact loss (same parameters and mask).
    v: direction, typically the top Hessian eigenvector.

  Returns:
    :math:`c` (NaN when :math:`v^\top H v = 0`).
  """
  num = _vdot(v, jvp(v))
  den = _vdot(v, hvp(v))
  return jnp.where(den != 0, num / jnp.where(den != 0, den, 1.0), jnp.nan)


def predicted_bound(eta: jax.Array | float, c: jax.Array | float) -> jax.Array:
  r"""The largest stable sharpness :math:`2 / (\eta c)`; :math:`+\infty` when :math:`c \le 0`.

  With :math:`c \le 0` no curvature along the direction is oscillatory-unstable
  (the rule does not descend there), so the direction sets no bound.
  """
  c = jnp.asarray(c)
  safe = jnp.where(c > 0, c, 1.0)
  return jnp.where(c > 0, 2.0 / (eta * safe), jnp.inf)
