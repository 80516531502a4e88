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

from credit.curvature.krylov import HIGHEST, ArnoldiResult, arnoldi

import jax
import jax.numpy as jnp

PyTree = Any
MatVec = Callable[[PyTree], PyTree]
__all__ = [
  "ArnoldiResult",
  "UpdateMapSpectrum",
  "alignment_factor",
  "arnoldi",
  "predicted_bound",
  "update_map_spectrum",
]


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
  jvp: MatVec,
  v0: PyTree,
  eta: jax.Array | float,
  num_steps: int,
  mask: PyTree | None = None,
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
    mask: optional 0/1 pytree like ``v0`` for a masked :math:`PJP`: the Ritz
      values are those of :math:`J` on the free coordinates (masked ones would
      add :math:`\theta = 0`, a spurious :math:`\mu = 1`; see
      :func:`credit.curvature.krylov.arnoldi`).

  Returns:
    An :class:`UpdateMapSpectrum`.
  """
  res = arnoldi(jvp, v0, num_steps, mask=mask)
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
