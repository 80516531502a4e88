r"""KF-RTRL (Mujika et al. 2018) and R-KF-RTRL: unbiased Kronecker-factored influence estimates.

The immediate influence of this network is a Kronecker product,
:math:`\bar M_t[k, i, j] = \mathrm{diag}(D_t)_{ki} \hat a_{t,j}`, so one factor can
carry the presynaptic side and the other the state side.

**KF-RTRL** (``kf_rtrl``): :math:`\hat M_t[k, i, j] = \tilde B_{ki} \tilde A_j` with
:math:`\tilde A \in R^m`, :math:`\tilde B \in R^{N \times N}`. Each step draws two
signs :math:`\nu_0, \nu_1 \in \{\pm 1\}` and updates

.. math::

  \rho_0 = \sqrt{\lVert J_t \tilde B\rVert / \lVert \tilde A\rVert}, \qquad
  \rho_1 = \sqrt{\lVert D_t\rVert / \lVert \hat a_t\rVert},

.. math::

  \tilde A \leftarrow \nu_0 \rho_0 \tilde A + \nu_1 \rho_1 \hat a_t, \qquad
  \tilde B \leftarrow \nu_0 J_t \tilde B / \rho_0 + \nu_1 \mathrm{diag}(D_t) / \rho_1,
  \qquad g \mathrel{+}= (\tilde B^\top q_t)\, \tilde A^\top.

The product's cross terms carry :math:`\nu_0\nu_1` (zero mean), so
:math:`E[\tilde B \otimes \tilde A] = J_t M_{t-1} + \bar M_t`. One step from
:math:`M_0 = 0` is exact. Cost per example and step: memory :math:`O(N^2 + m)`,
compute :math:`O(N^3)` (the product :math:`W_{rec} \tilde B`).

**R-KF-RTRL** (``r_kf_rtrl``, Marschall, Cho & Savin 2020): the reverse
factorization :math:`\hat M_t[k, i, j] = \tilde A_i \tilde B_{kj}` with
:math:`\tilde A \in R^N`, :math:`\tilde B \in R^{N \times m}`, and signs
:math:`\nu \in \{\pm 1\}^N` per step:

.. math::

  \rho_0 = \sqrt{\lVert J_t \tilde B\rVert / \lVert \tilde A\rVert}, \qquad
  \rho_1 = \sqrt{\lVert M^\nu_t\rVert / \lVert \nu\rVert}, \qquad
  M^\nu_t = (\nu \odot D_t)\, \hat a_t^\top,

.. math::

  \tilde A \leftarrow \rho_0 \tilde A + \rho_1 \nu, \qquad
  \tilde B \leftarrow J_t \tilde B / \rho_0 + M^\nu_t / \rho_1, \qquad
  g \mathrel{+}= \tilde A\, (\tilde B^\top q_t)^\top,

unbiased since :math:`E[\nu_i \nu_k] = \delta_{ik}`. Cost per example and step:
memory :math:`O(N m)`, compute :math:`O(N^2 m)`.

Both start from zero factors (:math:`M_0 = 0`, the reference code draws random
ones) with guarded norms (see :mod:`credit.rules.influence`); the signs come
from the ``key`` passed to ``grads``, one draw per example and step.
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules import influence
from credit.rules.base import GradientRule

import jax
import jax.numpy as jnp
import ml_collections


def kf_rtrl_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  key: jax.Array,
  loss_steps: tuple[int, ...] | None = None,
) -> Params:
  """One KF-RTRL estimate of the gradient (two signs per example and step)."""
  w_rec = effective_w_rec(params, spec)
  dtype = traj.h.dtype
  n, m = spec.n_hidden, spec.n_hidden + spec.n_in + 1
  noise = influence.signs(key, traj.x.shape[:2] + (2,), dtype)

  def step(carry, x: influence.StepInputs):
    a_tilde, b_tilde = carry  # [m], [N(k), N(i)]
    j_b = influence.jacobian_apply(w_rec, spec.alpha, x.d, b_tilde)
    nu0, nu1 = x.noise[0], x.noise[1]
    rho0 = influence.scaling(j_b, a_tilde)
    rho1 = influence.scaling(x.d, x.a)
    a_tilde = nu0 * rho0 * a_tilde + nu1 * rho1 * x.a
    b_tilde = nu0 * j_b / rho0 + jnp.diag(nu1 * x.d / rho1)
    return a_tilde, b_tilde

  def grad_at(carry, x: influence.StepInputs):
    a_tilde, b_tilde = carry
    return jnp.outer(x.q @ b_tilde, a_tilde)

  init = (jnp.zeros((m,), dtype), jnp.zeros((n, n), dtype))
  return influence.run_estimate(step, grad_at, init, params, spec, traj, errors, noise, loss_steps)


def r_kf_rtrl_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  key: jax.Array,
  loss_steps: tuple[int, ...] | None = None,
) -> Params:
  """One R-KF-RTRL estimate of the gradient (``N`` signs per example and step)."""
  w_rec = effective_w_rec(params, spec)
  dtype = traj.h.dtype
  n, m = spec.n_hidden, spec.n_hidden + spec.n_in + 1
  noise = influence.signs(key, traj.x.shape[:2] + (n,), dtype)

  def step(carry, x: influence.StepInputs):
    a_tilde, b_tilde = carry  # [N(i)], [N(k), m(j)]
    j_b = influence.jacobian_apply(w_rec, spec.alpha, x.d, b_tilde)
    m_nu = (x.noise * x.d)[:, None] * x.a[None, :]
    rho0 = influence.scaling(j_b, a_tilde)
    rho1 = influence.scaling(m_nu, x.noise)
    a_tilde = rho0 * a_tilde + rho1 * x.noise
    b_tilde = j_b / rho0 + m_nu / rho1
    return a_tilde, b_tilde

  def grad_at(carry, x: influence.StepInputs):
    a_tilde, b_tilde = carry
    return jnp.outer(a_tilde, x.q @ b_tilde)

  init = (jnp.zeros((n,), dtype), jnp.zeros((n, m), dtype))
  return influence.run_estimate(step, grad_at, init, params, spec, traj, errors, noise, loss_steps)


def make_kf_rtrl(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return influence.estimate_rule("kf_rtrl", kf_rtrl_grads, spec, options.get("loss_steps"))


def make_r_kf_rtrl(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return influence.estimate_rule("r_kf_rtrl", r_kf_rtrl_grads, spec, options.get("loss_steps"))
