r"""Shared pieces of the RTRL approximations (UORO, KF-RTRL, R-KF-RTRL).

Each of these rules carries, per example, a factored estimate of the influence
tensor :math:`M_t[k, i, j] = \partial h_{t,k} / \partial W_{ij}` forward over the
``T`` steps of the sequence (the online form: nothing is stored across time)
and accumulates :math:`g = \sum_t q_t^\top \hat M_t`,
:math:`q_t = W_{out}^\top e_t`. The estimate starts at :math:`M_0 = 0` for every
sequence, as in :mod:`credit.rules.rtrl`, since the weights are fixed within a
batch.

The exact recursion they approximate (:mod:`credit.rules.rtrl`) is

.. math::

  M_t = J_t M_{t-1} + \bar M_t, \qquad
  J_t = (1-\alpha) I + \mathrm{diag}(D_t) W_{rec}, \qquad
  \bar M_t[k, i, j] = \delta_{ki} D_{t,i} \hat a_{t,j},

with :math:`D_t = \alpha\phi'(u_t)` and :math:`\hat a_t = [h_{t-1}; x_t; 1]`.

The stochastic factorizations rescale their two factors by
:math:`\rho = \sqrt{\lVert\cdot\rVert / \lVert\cdot\rVert}` (Tallec & Ollivier
2017) to minimize the variance. Norms are guarded,
:math:`\lVert x\rVert_\epsilon = \sqrt{\sum x^2 + \epsilon^2}`: the zero factors of
:math:`M_0 = 0` then give :math:`\rho = 1` on the first step, a step with no
active unit gives no division by zero, and forward-mode derivatives stay
finite. The scalings depend on the past and on the current step's
deterministic quantities only (never on the fresh sign draws), so the estimate
stays unbiased whatever :math:`\epsilon`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.models.rnn import Params, RNNSpec, Trajectory
from credit.rules.base import (
  GradientRule,
  learning_signal,
  no_state,
  presynaptic,
  readout_grads,
  split_packed,
)

import jax
import jax.numpy as jnp

# Guards the scalings' norms (Tallec & Ollivier's epsilon).
EPS = 1e-7


class StepInputs(NamedTuple):
  """One example's quantities at step ``t``.

  Attributes:
    a: presynaptic vector :math:`\\hat a_t` ``[m]``.
    d: :math:`D_t = \\alpha \\phi'(u_t)` ``[N]``.
    q: learning signal :math:`q_t = W_{out}^\\top e_t` ``[N]``.
    noise: the step's random signs (shape set by the rule).
  """

  a: jax.Array
  d: jax.Array
  q: jax.Array
  noise: jax.Array


# ``step(carry, inputs) -> carry`` for one example, and ``grad_at(carry, inputs) -> g_t [N, m]``,
# the step's gradient term from the carry after that step.
Step = Callable[[Any, StepInputs], Any]
GradAt = Callable[[Any, StepInputs], jax.Array]


def guarded_norm(x: jax.Array) -> jax.Array:
  r""":math:`\sqrt{\sum x^2 + \epsilon^2}` (Frobenius)."""
  return jnp.sqrt(jnp.sum(x * x) + EPS**2)


def scaling(num: jax.Array, den: jax.Array) -> jax.Array:
  r"""The variance-minimizing factor of a two-term product.

  .. math::

    \rho = \sqrt{\lVert num\rVert_\epsilon / \lVert den\rVert_\epsilon}

  Args:
    num: the factor that :math:`\rho` divides.
    den: the factor that :math:`\rho` multiplies.

  Returns:
    The scalar :math:`\rho`, which balances the two norms after rescaling.
  """
  return jnp.sqrt(guarded_norm(num) / guarded_norm(den))


def jacobian_apply(w_rec: jax.Array, alpha: float, d: jax.Array, v: jax.Array) -> jax.Array:
  r""":math:`J_t v = (1-\alpha) v + D_t \odot (W_{rec} v)` for ``v [N, ...]`` (state axis first)."""
  wv = jnp.tensordot(w_rec, v, axes=1)
  return (1.0 - alpha) * v + d.reshape(d.shape + (1,) * (v.ndim - 1)) * wv


def run_estimate(
  step: Step,
  grad_at: GradAt,
  init: Any,
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  noise: jax.Array,
  loss_steps: tuple[int, ...] | None = None,
) -> Params:
  """Runs ``step`` forward over time for every example and sums the gradients.

  The gradient term :math:`g_t` is taken only where the learning signal can be non-zero:
  with static ``loss_steps`` (the task's, every other step has :math:`q_t = 0`), the
  scan runs in segments that end at each loss step and ``grad_at`` runs there alone,
  and no step after the last loss step runs; without them, at every step. Its
  ``[N, m]`` per-example term at 27 of seq-MNIST's 28 steps was zero, and building and
  summing it cost more than the update itself.

  Args:
    step: one example's update at one step.
    grad_at: the step's gradient term from the updated carry.
    init: one example's initial carry (the same for every example).
    params: network parameters.
    spec: the network.
    traj: the forward trajectory.
    errors: output errors ``[B, T, N_out]``.
    noise: the random draws ``[B, T, ...]``, one set per example and step.
    loss_steps: the only steps whose errors can be non-zero (static), or ``None``.

  Returns:
    The full gradient pytree (exact readout).
  """
  inputs = StepInputs(
    a=presynaptic(traj),
    d=spec.alpha * traj.dphi,
    q=learning_signal(params["w_out"].T, errors),
    noise=noise,
  )
  g0 = jnp.zeros((spec.n_hidden, inputs.a.shape[-1]), traj.h.dtype)

  def every_step(xs: StepInputs) -> jax.Array:
    def accumulate(state, x):
      carry, g = state
      carry = step(carry, x)
      return (carry, g + grad_at(carry, x)), None

    (_, g), _ = jax.lax.scan(accumulate, (init, g0), xs)
    return g

  def at_loss_steps(xs: StepInputs) -> jax.Array:
    carry, g, start = init, g0, 0
    for t in sorted(set(loss_steps)):
      if t > start:
        segment = jax.tree.map(lambda a: a[start:t], xs)  # noqa: B023 - used at once
        carry, _ = jax.lax.scan(lambda c, x: (step(c, x), None), carry, segment)
      x_t = jax.tree.map(lambda a: a[t], xs)  # noqa: B023
      carry = step(carry, x_t)
      g = g + grad_at(carry, x_t)
      start = t + 1
    return g

  one_example = every_step if loss_steps is None else at_loss_steps
  g = jnp.sum(jax.vmap(one_example)(inputs), axis=0)
  return {**split_packed(g, spec), **readout_grads(traj, errors)}


def signs(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
  """Independent Rademacher draws (:math:`\\pm 1`), the lowest-variance choice."""
  return jax.random.rademacher(key, shape, dtype)


def estimate_rule(
  name: str, estimate: Callable, spec: RNNSpec, loss_steps: tuple[int, ...] | None = None
) -> GradientRule:
  """A stateless rule whose gradient is ``estimate(params, spec, traj, errors, key,
  loss_steps)`` (``loss_steps``: the task's static loss steps, see :func:`run_estimate`)."""

  def grads(params, state, traj, errors, key):
    del state
    return estimate(params, spec, traj, errors, key, loss_steps)

  return GradientRule(name=name, init=no_state, grads=grads)
