r"""UORO (Tallec & Ollivier 2017): an unbiased rank-one estimate of the influence tensor.

Per example, the influence tensor is approximated by an outer product of a
state-side vector :math:`\tilde A \in R^N` and a parameter-side matrix
:math:`\tilde B \in R^{N \times m}`, :math:`\hat M_t[k, i, j] = \tilde A_k \tilde B_{ij}`.
Each step draws fresh signs :math:`\nu \in \{\pm 1\}^N` and updates

.. math::

  M^\nu_t = \nu^\top \bar M_t = (\nu \odot D_t)\, \hat a_t^\top, \qquad
  \rho_0 = \sqrt{\lVert \tilde B\rVert / \lVert J_t \tilde A\rVert}, \qquad
  \rho_1 = \sqrt{\lVert M^\nu_t\rVert / \lVert \nu\rVert},

.. math::

  \tilde A \leftarrow \rho_0 J_t \tilde A + \rho_1 \nu, \qquad
  \tilde B \leftarrow \tilde B / \rho_0 + M^\nu_t / \rho_1, \qquad
  g \mathrel{+}= (q_t \cdot \tilde A)\, \tilde B,

from :math:`\tilde A = 0, \tilde B = 0` (:math:`M_0 = 0`). Since
:math:`E[\nu\nu^\top] = I` and the cross terms have zero mean,
:math:`E[\tilde A \otimes \tilde B] = M_t` at every step: the gradient is an
unbiased estimate of RTRL's (at fixed weights, of BPTT's). :math:`\rho_0, \rho_1`
(norms guarded, see :mod:`credit.rules.influence`) minimize its variance, which
stays large: every example's estimate is rank one.

The signs come from the ``key`` passed to ``grads`` (one draw per example and
step). The reference code starts from random :math:`N(0, 1)` factors instead of
zero; their product has zero mean, so it only adds variance.

Cost per example and step: memory :math:`O(N m)`, compute :math:`O(N^2 + N m)`
(one :math:`J_t \tilde A`, a few :math:`N \times m` updates).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules import influence
from credit.rules.base import GradientRule

import jax
import jax.numpy as jnp
import ml_collections


def uoro_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  key: jax.Array,
  loss_steps: tuple[int, ...] | None = None,
) -> Params:
  """One UORO estimate of the gradient (independent signs per example and step)."""
  w_rec = effective_w_rec(params, spec)
  dtype = traj.h.dtype
  batch, steps, m = traj.x.shape[0], traj.x.shape[1], spec.n_hidden + spec.n_in + 1
  noise = influence.signs(key, (batch, steps, spec.n_hidden), dtype)

  def step(carry, x: influence.StepInputs):
    a_tilde, b_tilde = carry  # [N], [N, m]
    j_a = influence.jacobian_apply(w_rec, spec.alpha, x.d, a_tilde)
    m_nu = (x.noise * x.d)[:, None] * x.a[None, :]
    rho0 = influence.scaling(b_tilde, j_a)
    rho1 = influence.scaling(m_nu, x.noise)
    a_tilde = rho0 * j_a + rho1 * x.noise
    b_tilde = b_tilde / rho0 + m_nu / rho1
    return a_tilde, b_tilde

  def grad_at(carry, x: influence.StepInputs):
    a_tilde, b_tilde = carry
    return jnp.dot(x.q, a_tilde) * b_tilde

  init = (jnp.zeros((spec.n_hidden,), dtype), jnp.zeros((spec.n_hidden, m), dtype))
  return influence.run_estimate(step, grad_at, init, params, spec, traj, errors, noise, loss_steps)


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return influence.estimate_rule("uoro", uoro_grads, spec, options.get("loss_steps"))
