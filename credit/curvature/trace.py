r"""Hutchinson trace estimation with Rademacher probes.

For a symmetric operator :math:`A` and probes :math:`z` with i.i.d. entries
:math:`\pm 1`,

.. math::

  \mathrm{Tr} A = \mathbb{E}[z^\top A z], \qquad
  \mathrm{Var}[z^\top A z] = 2 \Big( \|A\|_F^2 - \sum_i A_{ii}^2 \Big),

and the estimate is the mean over ``num_probes`` probes, with its standard
error from the sample variance. Probes run one after another (``lax.map``), so
memory holds one probe and one matvec at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.curvature.lanczos import HIGHEST

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any


class TraceEstimate(NamedTuple):
  """Output of :func:`hutchinson_trace`.

  Attributes:
    estimate: mean of the per-probe quadratic forms.
    stderr: standard error of the mean (NaN with a single probe).
    samples: the per-probe values :math:`z^\\top A z`, ``[num_probes]``.
  """

  estimate: jax.Array
  stderr: jax.Array
  samples: jax.Array


def rademacher_like(key: jax.Array, like: PyTree) -> PyTree:
  """A pytree shaped like ``like`` with i.i.d. +-1 entries."""
  flat, unravel = ravel_pytree(like)
  return unravel(jax.random.rademacher(key, flat.shape, flat.dtype))


def hutchinson_trace(
  matvec: Callable[[PyTree], PyTree],
  key: jax.Array,
  like: PyTree,
  num_probes: int,
  batch_size: int | None = None,
) -> TraceEstimate:
  """Unbiased estimate of ``Tr A`` from ``num_probes`` Rademacher probes.

  Args:
    matvec: ``v -> A v`` on pytrees shaped like ``like``.
    key: PRNG key for the probes.
    like: a pytree with the operator's shape and dtype (e.g. the parameters).
    num_probes: number of probes (static, >= 1).
    batch_size: probes vmapped together inside the sequential map (``None``:
      one at a time).

  Returns:
    A :class:`TraceEstimate`.
  """
  if num_probes < 1:
    raise ValueError(f"num_probes must be >= 1, got {num_probes}")
  flat, unravel = ravel_pytree(like)

  def quadratic_form(k):
    z = jax.random.rademacher(k, flat.shape, flat.dtype)
    az = ravel_pytree(matvec(unravel(z)))[0]
    return jnp.dot(z, az, precision=HIGHEST)

  samples = jax.lax.map(quadratic_form, jax.random.split(key, num_probes), batch_size=batch_size)
  estimate = jnp.mean(samples)
  if num_probes > 1:
    stderr = jnp.std(samples, ddof=1) / jnp.sqrt(num_probes)
  else:
    stderr = jnp.full((), jnp.nan, samples.dtype)
  return TraceEstimate(estimate=estimate, stderr=stderr, samples=samples)
