r"""Spectral density by stochastic Lanczos quadrature (SLQ; Ghorbani et al. 2019).

The spectral density of a symmetric :math:`A \in \mathbb{R}^{n \times n}` with
eigenpairs :math:`(\lambda_i, u_i)`, smoothed by a Gaussian kernel
:math:`g_\sigma`, is

.. math::

  \phi_\sigma(t) = \frac1n \sum_i g_\sigma(t - \lambda_i)
    = \mathbb{E}_v \Big[ \sum_i (u_i^\top v)^2 g_\sigma(t - \lambda_i) \Big]

for a random unit vector :math:`v` with :math:`\mathbb{E}[vv^\top] = I/n`.
``m`` Lanczos steps from :math:`v` give :math:`T = S \Theta S^\top`, and
Gauss quadrature replaces the inner sum by
:math:`\sum_j \tau_j g_\sigma(t - \theta_j)` with nodes :math:`\theta_j` (Ritz
values) and weights :math:`\tau_j = S_{1j}^2`, the squared **first**
components of T's eigenvectors (not whole eigenvectors: PyHessian's bug, fixed
in its PR #23). The weights of one probe sum to one, so the density integrates
to one; the estimate averages over probes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.curvature.lanczos import lanczos_tridiag, tridiagonal

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any


class SpectralDensity(NamedTuple):
  """Output of :func:`slq_density`.

  Attributes:
    grid: evaluation points ``[num_grid]``.
    density: smoothed density on ``grid`` (integrates to about one).
    nodes: Ritz values per probe ``[num_probes, num_steps]``.
    weights: quadrature weights per probe ``[num_probes, num_steps]`` (rows sum to one).
    sigma: the kernel width used.
  """

  grid: jax.Array
  density: jax.Array
  nodes: jax.Array
  weights: jax.Array
  sigma: jax.Array


def gauss_quadrature(alphas: jax.Array, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nodes (Ritz values) and weights (squared first eigenvector components) of ``T``."""
  theta, s = jnp.linalg.eigh(tridiagonal(alphas, betas))
  return theta, s[0] ** 2


def smooth_density(
  nodes: jax.Array, weights: jax.Array, grid: jax.Array, sigma: jax.Array | float
) -> jax.Array:
  r"""Gaussian-smoothed quadrature density averaged over probes.

  .. math::

    \phi(t) = \frac1P \sum_{p=1}^P \sum_j \tau_{pj}
      \frac{1}{\sqrt{2\pi}\sigma} e^{-(t - \theta_{pj})^2 / 2\sigma^2}

  Args:
    nodes: ``[P, m]`` (or ``[m]``) quadrature nodes.
    weights: weights of the same shape.
    grid: evaluation points ``[G]``.
    sigma: kernel standard deviation.

  Returns:
    The density on ``grid``, ``[G]``.
  """
  nodes = jnp.reshape(nodes, (-1, nodes.shape[-1]))
  weights = jnp.reshape(weights, nodes.shape)
  z = (grid[:, None, None] - nodes[None]) / sigma
  kernel = jnp.exp(-0.5 * z**2) / (jnp.sqrt(2.0 * jnp.pi) * sigma)
  return jnp.sum(kernel * weights[None], axis=(1, 2)) / nodes.shape[0]


def slq_density(
  matvec: Callable[[PyTree], PyTree],
  key: jax.Array,
  like: PyTree,
  num_steps: int,
  num_probes: int,
  num_grid: int = 512,
  sigma: float | None = None,
  grid: jax.Array | None = None,
) -> SpectralDensity:
  r"""Spectral density of ``matvec`` by SLQ with Rademacher start vectors.

  Args:
    matvec: symmetric operator on pytrees shaped like ``like``.
    key: PRNG key for the probes.
    like: pytree with the operator's shape and dtype.
    num_steps: Lanczos steps per probe (static, at most the dimension).
    num_probes: number of start vectors (run one after another).
    num_grid: grid size when ``grid`` is not given.
    sigma: kernel width; default ``(max node - min node) / num_steps``, the
      resolution ``m`` quadrature nodes can carry.
    grid: evaluation points; default ``num_grid`` points spanning the nodes
      plus ``5 sigma`` on each side (so the mass inside is one up to 6e-7).

  Returns:
    A :class:`SpectralDensity`.
  """
  if num_probes < 1:
    raise ValueError(f"num_probes must be >= 1, got {num_probes}")
  flat, unravel = ravel_pytree(like)

  def one(k):
    v0 = unravel(jax.random.rademacher(k, flat.shape, flat.dtype))
    res = lanczos_tridiag(matvec, v0, num_steps)
    return gauss_quadrature(res.alphas, res.betas)

  nodes, weights = jax.lax.map(one, jax.random.split(key, num_probes))
  lo, hi = jnp.min(nodes), jnp.max(nodes)
  if sigma is None:
    width = hi - lo
    # A single-point spectrum has zero width: fall back to a scale of its value.
    floor = jnp.finfo(flat.dtype).eps ** 0.5 * jnp.maximum(jnp.abs(hi), 1.0)
    sigma = jnp.maximum(width / num_steps, floor)
  sigma = jnp.asarray(sigma, flat.dtype)
  if grid is None:
    grid = jnp.linspace(lo - 5.0 * sigma, hi + 5.0 * sigma, num_grid)
  return SpectralDensity(
    grid=grid,
    density=smooth_density(nodes, weights, grid, sigma),
    nodes=nodes,
    weights=weights,
    sigma=sigma,
  )
