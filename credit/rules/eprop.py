r"""e-prop and RFLO for the leaky rate RNN: eligibility traces times a learning signal.

All three rules drop every cross-neuron path of the influence tensor (RTRL
restricted to ``k = i``) and pair a local trace with the immediate learning
signal :math:`q_t = F e_t`:

.. math::

  E_t = \lambda_t \odot E_{t-1} + D_t \hat a_t^\top, \qquad
  \nabla W = \sum_t q_t \odot E_t,

where :math:`D_t = \alpha\phi'(u_t)`, :math:`\hat a_t = [h_{t-1}; x_t; 1]` and

* ``eprop`` (Bellec et al. 2020): symmetric feedback :math:`F = W_{out}^\top`
  (current weights) and the neuron's own leak and self-coupling,
  :math:`\lambda_{t,i} = (1-\alpha) + D_{t,i} W_{rec,ii}` (with ``no_autapse``
  the diagonal is zero and only the leak remains); ``self_coupling=False``
  keeps the leak only;
* ``eprop_random``: the same trace with a fixed random feedback
  :math:`F = B`, :math:`B_{ij} \sim \mathcal N(0, s^2 / N)` with
  ``s = rule_options.feedback_scale``, drawn once per seed by ``init`` and
  carried as the rule state ``{"feedback": B}``;
* ``rflo`` (Murray 2019): random feedback :math:`B` as above and the leak-only
  trace :math:`\lambda = 1-\alpha`.

Readout gradients are exact. ``rule_options.online`` selects the online
implementation (traces carried forward in time); the default offline one
filters the learning signal backward per neuron and contracts over batch and
the credited time steps only, which gives the same gradient (see
:mod:`credit.rules.eligibility_trace`). With ``alpha = 1`` and a loss on the last
step only (seq-MNIST), the credit lives on that step alone, so the rule costs
little more than the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

from credit.models.rnn import Params, RNNSpec, Trajectory
from credit.rules import eligibility_trace as et
from credit.rules.base import GradientRule, learning_signal, no_state, readout_grads

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def random_feedback(key: jax.Array, spec: RNNSpec, scale: float, dtype) -> jax.Array:
  r"""A fixed feedback matrix :math:`B \in R^{N \times N_{out}}`, :math:`B_{ij} \sim N(0, s^2/N)`.

  Args:
    key: the rule's seed key.
    spec: the network (sizes).
    scale: ``s``, ``rule_options.feedback_scale``.
    dtype: the parameters' dtype.

  Returns:
    ``B [N, N_out]``.
  """
  shape = (spec.n_hidden, spec.n_out)
  return jax.random.normal(key, shape, dtype) * jnp.asarray(scale / spec.n_hidden**0.5, dtype)


Modulation = Callable[[jax.Array], jax.Array]


def matrix_modulation(w_mod: jax.Array) -> Modulation:
  r"""The modulatory signal :math:`m_t = \tilde W^\top z_t` of a dense ``W~ [N(post), N(pre)]``."""
  return lambda z: z @ w_mod


def trace_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  feedback: jax.Array,
  *,
  self_coupling: bool,
  online: bool,
  modulation: Modulation | None = None,
  loss_steps: tuple[int, ...] | None = None,
) -> Params:
  r"""Gradient of the e-prop family, optionally with MDGL's one-hop modulatory term.

  .. math::

    \nabla W = \sum_t q_t \odot E_t + m_t \odot E_{t-1}, \qquad
    m_t = \mathcal M(D_t \odot q_t), \qquad q_t = F e_t,

  where :math:`\mathcal M(z)_p = \sum_{k \ne p} \tilde W_{kp} z_k` for MDGL.

  Args:
    params: network parameters.
    spec: the network.
    traj: forward trajectory.
    errors: output errors :math:`e_t` ``[B, T, N_out]``.
    feedback: :math:`F` ``[N, N_out]``.
    self_coupling: keep :math:`D_{t,i} W_{rec,ii}` in the trace decay.
    online: carry the traces forward in time instead of the backward filter.
    modulation: :math:`\mathcal M`, ``z [B, T, N] -> m [B, T, N]`` (MDGL), or
      ``None`` for plain e-prop.
    loss_steps: the only steps whose errors can be non-zero, when the task fixes
      them (``rule_options.loss_steps``); the offline form then picks the credited
      steps when the program is built instead of from the errors at run time.

  Returns:
    The full gradient pytree (exact readout).
  """
  q = learning_signal(feedback, errors)
  decay = et.trace_decay(params, spec, traj, self_coupling)
  m = None if modulation is None else _modulation_signal(modulation, spec, traj, q, loss_steps)
  if online:
    grads = et.online_grads(spec, traj, q, decay, m)
  else:
    if loss_steps is None:
      active = et.credited_steps(errors, decay, modulated=m is not None)
    else:
      n_steps = errors.shape[1]
      active = et.static_credited_steps(loss_steps, n_steps, decay is not None, m is not None)
    grads = et.offline_grads(spec, traj, q, decay, m, active)
  return {**grads, **readout_grads(traj, errors)}


def _modulation_signal(
  modulation: Modulation,
  spec: RNNSpec,
  traj: Trajectory,
  q: jax.Array,
  loss_steps: tuple[int, ...] | None,
) -> jax.Array:
  r""":math:`m_t = \mathcal M(D_t \odot q_t)`, ``[B, T, N]``.

  With static ``loss_steps`` only those steps carry a signal (:math:`q_t = 0`
  elsewhere and :math:`\mathcal M` is linear), so :math:`\mathcal M` is applied
  there alone: for MDGL's dense modulatory matrix this saves a ``T``-step
  ``N x N`` product, as much work as the forward pass.
  """
  if loss_steps is None:
    return modulation(spec.alpha * traj.dphi * q)
  idx = np.asarray(loss_steps, np.int32)
  z = spec.alpha * jnp.take(traj.dphi, idx, axis=1) * jnp.take(q, idx, axis=1)
  return jnp.zeros_like(q).at[:, idx].set(modulation(z))


def loss_steps_option(options: ml_collections.ConfigDict) -> tuple[int, ...] | None:
  """``rule_options.loss_steps`` as a tuple (``None`` when unset)."""
  steps = options.get("loss_steps")
  return None if steps is None else tuple(int(s) for s in steps)


def from_first_step(loss_steps: tuple[int, ...] | None, first_step: int) -> tuple[int, ...] | None:
  """Static loss steps counted from a rule's ``first_step`` (its trajectory's first step)."""
  return None if loss_steps is None else tuple(s - first_step for s in loss_steps)


def trace_steps(
  spec: RNNSpec, options: ml_collections.ConfigDict, self_coupling: bool, modulated: bool
) -> tuple[int, tuple[int, ...] | None]:
  """``(first_step, loss_steps from it)`` of the offline trace rules.

  :attr:`~credit.rules.base.GradientRule.first_step` is 0 without static loss steps
  and for the online form (it carries traces from the first step); otherwise the
  first credited step.
  """
  loss_steps = loss_steps_option(options)
  if loss_steps is None or bool(options.online):
    return 0, loss_steps
  first = et.first_credited_step(loss_steps, et.decays(spec, self_coupling), modulated)
  return first, from_first_step(loss_steps, first)


def make_eprop(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  self_coupling, online = bool(options.self_coupling), bool(options.online)
  first, loss_steps = trace_steps(spec, options, self_coupling, modulated=False)

  def grads(params, state, traj, errors, key):
    del state, key
    return trace_grads(
      params,
      spec,
      traj,
      errors,
      params["w_out"].T,
      self_coupling=self_coupling,
      online=online,
      loss_steps=loss_steps,
    )

  return GradientRule(name="eprop", init=no_state, grads=grads, first_step=first)


def _random_feedback_rule(name: str, spec: RNNSpec, options, self_coupling: bool) -> GradientRule:
  scale, online = float(options.feedback_scale), bool(options.online)
  first, loss_steps = trace_steps(spec, options, self_coupling, modulated=False)

  def init(key, params):
    return {"feedback": random_feedback(key, spec, scale, params["w_out"].dtype)}

  def grads(params, state, traj, errors, key):
    del key
    return trace_grads(
      params,
      spec,
      traj,
      errors,
      state["feedback"],
      self_coupling=self_coupling,
      online=online,
      loss_steps=loss_steps,
    )

  return GradientRule(name=name, init=init, grads=grads, first_step=first)


def make_eprop_random(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _random_feedback_rule("eprop_random", spec, options, bool(options.self_coupling))


def make_rflo(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _random_feedback_rule("rflo", spec, options, self_coupling=False)
