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
from credit.rules.base import (
  GradientRule,
  learning_signal,
  presynaptic,
  readout_grads,
  split_packed,
)

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
  r"""One UORO estimate of the gradient (independent signs per example and step).

  :math:`\tilde B` is never formed step by step. Every update adds a rank-one term, so
  :math:`\tilde B_t = \sum_{s \le t} c_{s,t} M^\nu_s` with scalar coefficients
  (:math:`c_{s,t} = c_{s,t-1} / \rho_0`, :math:`c_{t,t} = 1 / \rho_1`), and the norm
  that :math:`\rho_0` needs follows from the Gram products
  :math:`\langle M^\nu_s, M^\nu_t\rangle = (v_s \cdot v_t)(\hat a_s \cdot \hat a_t)`,
  :math:`v = \nu \odot D`:

  .. math::

    \lVert\tilde B_t\rVert^2 = \lVert\tilde B_{t-1}\rVert^2 / \rho_0^2
      + 2 \langle\tilde B_{t-1}, M^\nu_t\rangle / (\rho_0 \rho_1)
      + \lVert M^\nu_t\rVert^2 / \rho_1^2 .

  The gradient :math:`\sum_t (q_t \cdot \tilde A_t) \tilde B_t = \sum_s w_s v_s \hat a_s^\top`
  with :math:`w_s = \sum_{t \ge s} (q_t \cdot \tilde A_t) c_{s,t}` is then one product
  over examples and steps: per step :math:`O(N^2 + T)` work instead of several passes
  over the :math:`N \times m` matrix (the same estimate, to rounding; the definition's
  cost :math:`O(N^2 + N m)` per example and step, see the module docstring). With static
  ``loss_steps`` no step after the last one runs.
  """
  w_rec = effective_w_rec(params, spec)
  dtype = traj.h.dtype
  batch, steps = traj.x.shape[0], traj.x.shape[1]
  noise = influence.signs(key, (batch, steps, spec.n_hidden), dtype)
  last = steps if loss_steps is None else max(loss_steps) + 1
  a_hat = presynaptic(traj)[:, :last]  # [B, T', m]
  v = (noise * spec.alpha * traj.dphi)[:, :last]  # nu * D, [B, T', N]
  q = learning_signal(params["w_out"].T, errors)[:, :last]
  eps2 = influence.EPS**2

  def one_example(v_b, a_b, nu_b, d_b, q_b):
    gram = (v_b @ v_b.T) * (a_b @ a_b.T)  # <M_s, M_t>, [T', T']
    t_idx = jnp.arange(last)

    def step(carry, t):
      a_tilde, c, nb2, w = carry
      j_a = influence.jacobian_apply(w_rec, spec.alpha, d_b[t], a_tilde)
      rho0 = jnp.sqrt(jnp.sqrt(nb2 + eps2) / influence.guarded_norm(j_a))
      rho1 = jnp.sqrt(jnp.sqrt(gram[t, t] + eps2) / influence.guarded_norm(nu_b[t]))
      a_tilde = rho0 * j_a + rho1 * nu_b[t]
      cross = jnp.dot(c, gram[:, t])  # <B_{t-1}, M_t> (c_s = 0 for s >= t)
      nb2 = jnp.maximum(nb2 / rho0**2 + 2 * cross / (rho0 * rho1) + gram[t, t] / rho1**2, 0.0)
      c = c / rho0 + (t_idx == t).astype(dtype) / rho1
      w = w + jnp.dot(q_b[t], a_tilde) * c
      return (a_tilde, c, nb2, w), None

    zeros_t = jnp.zeros((last,), dtype)
    init = (jnp.zeros((spec.n_hidden,), dtype), zeros_t, jnp.zeros((), dtype), zeros_t)
    (_, _, _, w), _ = jax.lax.scan(step, init, t_idx)
    return w

  d = (spec.alpha * traj.dphi)[:, :last]
  w = jax.vmap(one_example)(v, a_hat, noise[:, :last], d, q)  # [B, T']
  g = jnp.einsum("btn,btm->nm", w[..., None] * v, a_hat)
  return {**split_packed(g, spec), **readout_grads(traj, errors)}


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return influence.estimate_rule("uoro", uoro_grads, spec, options.get("loss_steps"))
