r"""Relative flatness of one weight matrix (Petzka et al., NeurIPS 2021).

Convention. Weights are stored ``W[post, pre]`` (:mod:`credit.models.rnn`), so
**row** :math:`s` of :math:`W`, :math:`w_s = W_{s,:} \in \mathbb{R}^d`, holds the
weights *into* neuron :math:`s`: exactly Petzka's :math:`w_s`. With the Hessian
over :math:`\mathrm{vec}(W)` in row-major order,
:math:`H_{(s,j),(s',j')} = \partial^2 L / \partial W_{sj} \partial W_{s'j'}`,
and its :math:`d \times d` block :math:`H_{s,s'}` between rows :math:`s, s'`,

.. math::

  \kappa(W) = \sum_{s,s'} \langle w_s, w_{s'} \rangle \, \mathrm{Tr}\, H_{s,s'}
    = \sum_{s,s',j} G_{ss'} H_{(s,j),(s',j)}
    = \mathrm{Tr}\big( (G \otimes I_d) H \big), \qquad G = W W^\top .

It is invariant to the layer-wise reparametrization
:math:`W \to cW` together with :math:`1/c` on the next layer, unlike
:math:`\lambda_{\max}` or :math:`\mathrm{Tr} H`.

Estimator. With :math:`G \otimes I = (W \otimes I)(W^\top \otimes I)` and the
cyclic trace,

.. math::

  \kappa = \mathrm{Tr}\, M, \qquad
  M = (W^\top \otimes I_d)\, H \,(W \otimes I_d), \qquad
  M[Y] = W^\top H[W Y],

where :math:`(W \otimes I_d)\,\mathrm{vec}(Y) = \mathrm{vec}(W Y)` for
:math:`Y \in \mathbb{R}^{d_{in} \times d}` (:math:`d_{in}` = columns of
:math:`W`, here the same as :math:`d`) and :math:`H[\cdot]` is the HVP. So
:math:`M` is symmetric and costs one HVP per product, and Hutchinson with
Rademacher :math:`Z`,

.. math::

  \hat\kappa = \frac1P \sum_p \langle Z_p, W^\top H[W Z_p] \rangle_F
             = \frac1P \sum_p \langle W Z_p, H[W Z_p] \rangle_F ,

is unbiased with variance :math:`2(\|M\|_F^2 - \sum_i M_{ii}^2)/P`.
"""

from __future__ import annotations

from collections.abc import Callable

from credit.curvature.lanczos import HIGHEST
from credit.curvature.trace import TraceEstimate, hutchinson_trace

import jax
import jax.numpy as jnp


def flatness_operator(
  hvp: Callable[[jax.Array], jax.Array], weights: jax.Array
) -> Callable[[jax.Array], jax.Array]:
  """``Y -> W^T H[W Y]``, the symmetric operator whose trace is relative flatness.

  Args:
    hvp: HVP over the weight matrix alone, ``V [d_out, d] -> H V [d_out, d]``.
    weights: :math:`W` ``[d_out, d]``, rows = weights into each neuron.

  Returns:
    The operator on ``[d, d]`` matrices.
  """

  def op(y):
    return jnp.dot(weights.T, hvp(jnp.dot(weights, y, precision=HIGHEST)), precision=HIGHEST)

  return op


def relative_flatness(
  hvp: Callable[[jax.Array], jax.Array],
  weights: jax.Array,
  key: jax.Array,
  num_probes: int,
) -> TraceEstimate:
  r"""Hutchinson estimate of :math:`\kappa(W) = \mathrm{Tr}((W W^\top \otimes I) H)`.

  Args:
    hvp: HVP over the weight matrix alone (shape of ``weights`` in and out),
      e.g. ``lambda v: make_hvp(loss, params, batch, ("w_rec",))({"w_rec": v})["w_rec"]``.
    weights: :math:`W` ``[d_out, d]`` at the point of the Hessian.
    key: PRNG key for the probes.
    num_probes: Rademacher probes.

  Returns:
    A :class:`~credit.curvature.trace.TraceEstimate` of :math:`\kappa`.
  """
  d = weights.shape[1]
  like = jnp.zeros((d, d), weights.dtype)
  return hutchinson_trace(flatness_operator(hvp, weights), key, like, num_probes)


def relative_flatness_dense(hessian: jax.Array, weights: jax.Array) -> jax.Array:
  r""":math:`\sum_{s,s'} \langle w_s, w_{s'}\rangle \mathrm{Tr} H_{s,s'}` from a dense Hessian.

  Reference formula for tests and small models.

  Args:
    hessian: ``[d_out * d, d_out * d]`` over row-major ``vec(W)``.
    weights: :math:`W` ``[d_out, d]``.

  Returns:
    :math:`\kappa(W)`.
  """
  d_out, d = weights.shape
  blocks = jnp.reshape(hessian, (d_out, d, d_out, d))
  block_traces = jnp.einsum("sjtj->st", blocks)
  return jnp.sum(jnp.dot(weights, weights.T, precision=HIGHEST) * block_traces)
