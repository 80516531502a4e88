r"""Learning rules for the spiking network (:mod:`credit.models.lif`): BPTT, e-prop, RFLO, MDGL.

Every rule has the :class:`~credit.rules.base.GradientRule` interface
``grads(params, state, traj, errors, key)`` with ``traj`` a
:class:`~credit.models.lif.SpikingTrajectory` and ``errors = dL/dy_t``. Readout
gradients are exact (:func:`readout_grads`).

**Learning signal.** The readout sees the filtered spikes
:math:`\bar z_t = \kappa \bar z_{t-1} + (1-\kappa) z_t`, so the readout part of
:math:`\partial L / \partial z_t` is

.. math::

  \tilde L_t = (1-\kappa) \sum_{t' \ge t} \kappa^{t'-t} q_{t'}, \qquad q_t = F e_t,

with feedback :math:`F = W_{out}^\top` (symmetric) or a fixed random ``B``.

**Credit.** With :math:`\psi_t = \partial z_t / \partial v_t` and
:math:`\partial z_t / \partial a_t = -\beta \psi_t`, the adjoint of the state
:math:`(v_t, a_t)` runs backward from :math:`\lambda_{T+1} = 0`:

.. math::

  \mu_t = s_t + c \odot \lambda^v_{t+1} + \lambda^a_{t+1}
          + (1-\alpha) W_{rec}^\top \lambda^v_{t+1}, \qquad
  \lambda^v_t = \alpha \lambda^v_{t+1} + \psi_t \mu_t, \qquad
  \lambda^a_t = \rho \lambda^a_{t+1} - \beta \psi_t \mu_t,

and :math:`\nabla [W_{rec} | W_{in} | b] = (1-\alpha) \sum_t \lambda^v_t \hat z_t^\top`
with :math:`\hat z_t = [z_{t-1}; x_t; 1]`. ``c`` is the path from a unit's spike to
its own next potential:

* ``bptt``: :math:`s = \tilde L`, ``c = -v_th`` (the reset) and the recurrent
  term: the exact (surrogate) gradient, equal to ``jax.grad`` through the
  forward pass, which training uses (``exact=True``);
* ``eprop`` (Bellec et al. 2020): no recurrent term; ``c = 0`` as in the official
  code (the reset is not in the trace; ``rule_options.reset_in_trace`` adds
  ``-v_th``, MDGL-main's convention; ``self_coupling`` adds
  :math:`(1-\alpha) W_{rec,ii}`, zero without autapses); ALIF units keep the
  adaptation component. This adjoint is the transpose of the published forward
  recursion (:func:`online_grads`),

  .. math::

    \epsilon^v_t = (\alpha + c\psi_{t-1}) \epsilon^v_{t-1} - \beta c \psi_{t-1} \epsilon^a_{t-1}
                   + (1-\alpha) \hat z_t, \qquad
    \epsilon^a_t = \psi_{t-1} \epsilon^v_{t-1} + (\rho - \beta\psi_{t-1}) \epsilon^a_{t-1},

  .. math::

    e_t = \psi_t (\epsilon^v_t - \beta \epsilon^a_t), \qquad
    \bar e_t = \kappa \bar e_{t-1} + (1-\kappa) e_t, \qquad
    \nabla W = \sum_t q_t \odot \bar e_t;

* ``eprop_random``: the same with a fixed random ``B`` (state ``{"feedback": B}``);
* ``rflo``: random ``B`` and the leak-only trace :math:`\epsilon_t = \alpha \epsilon_{t-1}
  + (1-\alpha)\hat z_t`, :math:`e_t = \psi_t \epsilon_t` (no reset, no adaptation);
* ``mdgl`` / ``mdgl_exact`` (Liu et al. 2021, MDGL-main ``NP_mode`` 3 / 2): e-prop plus
  the one-hop modulatory signal paired with the previous trace,
  :math:`s_t = \tilde L_t + m_{t+1}`,
  :math:`m_{t,p} = (1-\alpha) \sum_{k \ne p} \tilde W_{kp} \psi_{t,k} \tilde L_{t,k}`,
  with :math:`\tilde W` the cell-type block means (``mdgl``) or ``W_rec``
  (``mdgl_exact``), as for the rate model (:mod:`credit.rules.mdgl`).

``rule_options.online`` carries the traces forward in time (memory ``3 B N m``);
the default offline form runs the per-neuron adjoint above (same gradient at
fixed weights). Online MDGL needs :math:`\tilde L_{t+1}`, which depends on later
errors when :math:`\kappa > 0`: it is available for ``kappa = 0`` only.
"""

from __future__ import annotations

from credit.models import lif
from credit.models.lif import LIFSpec, SpikingTrajectory
from credit.models.rnn import Params
from credit.rules import eligibility_trace as et
from credit.rules import mdgl
from credit.rules.base import GradientRule, learning_signal, no_state, split_packed
from credit.rules.eprop import Modulation, matrix_modulation, random_feedback

import jax
import jax.numpy as jnp
import ml_collections


def readout_grads(traj: SpikingTrajectory, errors: jax.Array) -> Params:
  r"""Exact readout gradients :math:`\sum_{b,t} e_t \bar z_t^\top` and :math:`\sum_{b,t} e_t`."""
  return {
    "w_out": jnp.einsum("bto,btn->on", errors, traj.zbar),
    "b_out": jnp.sum(errors, axis=(0, 1)),
  }


def presynaptic(traj: SpikingTrajectory) -> jax.Array:
  r"""The presynaptic vectors :math:`\hat z_t = [z_{t-1}; x_t; 1]`, ``[B, T, m]``."""
  ones = jnp.ones(traj.x.shape[:2] + (1,), traj.z.dtype)
  return jnp.concatenate([traj.z_prev, traj.x.astype(traj.z.dtype), ones], axis=-1)


def readout_signal(spec: LIFSpec, q: jax.Array) -> jax.Array:
  r""":math:`\tilde L_t = (1-\kappa)\sum_{t' \ge t} \kappa^{t'-t} q_{t'}`, ``[B, T, N]``."""
  if spec.kappa == 0.0:
    return q
  return (1.0 - spec.kappa) * et.filter_backward(q, jnp.full_like(q, spec.kappa))


def self_coupling(
  params: Params, spec: LIFSpec, *, reset: bool, self_weight: bool, dtype
) -> jax.Array:
  r"""``c [N]``: :math:`\partial v_{t+1,i} / \partial z_{t,i}` kept in a unit's own trace."""
  c = jnp.zeros((spec.n_hidden,), dtype)
  if reset:
    c = c - spec.v_th
  if self_weight and not spec.no_autapse:
    c = c + (1.0 - spec.alpha) * jnp.diagonal(lif.effective_w_rec(params, spec))
  return c


def backward_credit(
  spec: LIFSpec,
  traj: SpikingTrajectory,
  signal: jax.Array,
  coupling: jax.Array,
  *,
  adaptive: bool,
  w_rec: jax.Array | None = None,
) -> jax.Array:
  r"""Runs the adjoint of the module docstring backward; returns :math:`\lambda^v_t` ``[B, T, N]``.

  Args:
    spec: the network.
    traj: the forward trajectory.
    signal: :math:`s_t`, the credit arriving at :math:`z_t` from outside the state.
    coupling: ``c [N]``, the path from a unit's spike to its own next potential.
    adaptive: keep the adaptation variable (ALIF units).
    w_rec: the effective recurrent matrix for the exact gradient, or ``None``.
  """
  dtype = traj.z.dtype
  alpha, rho = spec.alpha, spec.rho
  beta = lif.adaptation_strength(spec, dtype) if adaptive else None

  def body(carry, inputs):
    lam_v, lam_a = carry
    s_t, psi_t = inputs
    mu = s_t + coupling * lam_v
    if w_rec is not None:
      mu = mu + (1.0 - alpha) * (lam_v @ w_rec)
    if beta is not None:
      mu = mu + lam_a
      lam_a = rho * lam_a - beta * psi_t * mu
    lam_v = alpha * lam_v + psi_t * mu
    return (lam_v, lam_a), lam_v

  zeros = jnp.zeros_like(signal[:, 0])
  xs = (jnp.swapaxes(signal, 0, 1), jnp.swapaxes(traj.psi, 0, 1))
  _, lam_v = jax.lax.scan(body, (zeros, zeros), xs, reverse=True)
  return jnp.swapaxes(lam_v, 0, 1)


def contract(lam_v: jax.Array, spec: LIFSpec, traj: SpikingTrajectory) -> Params:
  r""":math:`(1-\alpha) \sum_{b,t} \lambda^v_t \hat z_t^\top` as ``w_rec``, ``w_in``, ``b``."""
  g = (1.0 - spec.alpha) * jnp.einsum("btn,btm->nm", lam_v, presynaptic(traj))
  return split_packed(g, spec)


def online_grads(
  spec: LIFSpec,
  traj: SpikingTrajectory,
  q: jax.Array,
  coupling: jax.Array,
  *,
  adaptive: bool,
  modulation: jax.Array | None = None,
) -> Params:
  r"""The trace gradient with eligibility vectors carried forward in time.

  .. math::

    g = \sum_t q_t \odot \bar e_t + m_t \odot e_{t-1}

  (module docstring for :math:`\epsilon^v, \epsilon^a, e, \bar e`).

  Args:
    spec: the network.
    traj: the forward trajectory.
    q: the immediate learning signal :math:`q_t = F e_t` ``[B, T, N]``.
    coupling: ``c [N]``.
    adaptive: keep the adaptation component :math:`\epsilon^a`.
    modulation: MDGL's :math:`m_t` ``[B, T, N]`` (only with ``kappa = 0``).

  Returns:
    Gradients of ``w_rec`` (masked), ``w_in`` and ``b``.
  """
  if modulation is not None and spec.kappa != 0.0:
    raise ValueError("online MDGL needs kappa = 0 (its signal depends on later errors otherwise)")
  dtype = traj.z.dtype
  z_hat = presynaptic(traj)
  batch, _, m = z_hat.shape
  n = spec.n_hidden
  alpha, rho, kappa = spec.alpha, spec.rho, spec.kappa
  beta = lif.adaptation_strength(spec, dtype) if adaptive else jnp.zeros((n,), dtype)
  psi_prev = jnp.concatenate([jnp.zeros_like(traj.psi[:, :1]), traj.psi[:, :-1]], axis=1)
  mod = jnp.zeros_like(q) if modulation is None else modulation
  xs = tuple(jnp.swapaxes(v, 0, 1) for v in (z_hat, psi_prev, traj.psi, q, mod))

  def body(carry, inputs):
    eps_v, eps_a, e_bar, e_prev, g = carry
    zh, pp, p, q_t, m_t = inputs
    pp, p = pp[:, :, None], p[:, :, None]
    b, c = beta[None, :, None], coupling[None, :, None]
    new_v = (alpha + c * pp) * eps_v - b * c * pp * eps_a + (1.0 - alpha) * zh[:, None, :]
    new_a = pp * eps_v + (rho - b * pp) * eps_a
    e = p * (new_v - b * new_a)
    e_bar = kappa * e_bar + (1.0 - kappa) * e
    g = g + jnp.einsum("bn,bnm->nm", q_t, e_bar)
    if modulation is not None:
      g = g + jnp.einsum("bn,bnm->nm", m_t, e_prev)
    return (new_v, new_a, e_bar, e, g), None

  zeros = jnp.zeros((batch, n, m), dtype)
  init = (zeros, zeros, zeros, zeros, jnp.zeros((n, m), dtype))
  (*_, g), _ = jax.lax.scan(body, init, xs)
  return split_packed(g, spec)


def trace_grads(
  params: Params,
  spec: LIFSpec,
  traj: SpikingTrajectory,
  errors: jax.Array,
  feedback: jax.Array,
  *,
  adaptive: bool,
  reset: bool = False,
  self_weight: bool = True,
  online: bool = False,
  modulation: Modulation | None = None,
) -> Params:
  r"""Gradient of the spiking e-prop family, optionally with MDGL's modulatory term.

  Args:
    params: network parameters.
    spec: the network.
    traj: forward trajectory.
    errors: output errors :math:`e_t` ``[B, T, N_out]``.
    feedback: :math:`F` ``[N, N_out]``.
    adaptive: keep the ALIF adaptation component of the trace (``False``: leak only).
    reset: keep the reset :math:`-v_{th}` in the trace (MDGL-main's convention).
    self_weight: keep :math:`(1-\alpha) W_{rec,ii}` (zero without autapses).
    online: carry the eligibility vectors forward instead of the backward adjoint.
    modulation: MDGL's :math:`\mathcal M`, ``z [B, T, N] -> m [B, T, N]``, or ``None``.

  Returns:
    The full gradient pytree (exact readout).
  """
  q = learning_signal(feedback, errors)
  coupling = self_coupling(params, spec, reset=reset, self_weight=self_weight, dtype=q.dtype)
  if online:
    m = None if modulation is None else modulation((1.0 - spec.alpha) * traj.psi * q)
    grads = online_grads(spec, traj, q, coupling, adaptive=adaptive, modulation=m)
  else:
    signal = readout_signal(spec, q)
    if modulation is not None:
      signal = signal + et.shift_back(modulation((1.0 - spec.alpha) * traj.psi * signal))
    lam_v = backward_credit(spec, traj, signal, coupling, adaptive=adaptive)
    grads = contract(lam_v, spec, traj)
  return {**grads, **readout_grads(traj, errors)}


def bptt_grads(params: Params, spec: LIFSpec, traj: SpikingTrajectory, errors: jax.Array):
  """The exact surrogate gradient from the trajectory (equal to ``jax.grad`` of the forward)."""
  q = learning_signal(params["w_out"].T, errors)
  coupling = self_coupling(params, spec, reset=True, self_weight=False, dtype=q.dtype)
  lam_v = backward_credit(
    spec,
    traj,
    readout_signal(spec, q),
    coupling,
    adaptive=True,
    w_rec=lif.effective_w_rec(params, spec),
  )
  return {**contract(lam_v, spec, traj), **readout_grads(traj, errors)}


def _flags(options: ml_collections.ConfigDict) -> dict:
  return dict(
    online=bool(options.get("online", False)),
    reset=bool(options.get("reset_in_trace", False)),
    self_weight=bool(options.get("self_coupling", True)),
  )


def make_bptt(spec: LIFSpec, options: ml_collections.ConfigDict | None = None) -> GradientRule:
  del options

  def grads(params, state, traj, errors, key):
    del state, key
    return bptt_grads(params, spec, traj, errors)

  return GradientRule(name="bptt", init=no_state, grads=grads, exact=True)


def make_eprop(spec: LIFSpec, options: ml_collections.ConfigDict) -> GradientRule:
  flags = _flags(options)

  def grads(params, state, traj, errors, key):
    del state, key
    return trace_grads(params, spec, traj, errors, params["w_out"].T, adaptive=True, **flags)

  return GradientRule(name="eprop", init=no_state, grads=grads)


def _random_feedback_rule(name: str, spec: LIFSpec, options, *, leak_only: bool) -> GradientRule:
  scale = float(options.get("feedback_scale", 1.0))
  flags = _flags(options)
  if leak_only:
    flags.update(reset=False, self_weight=False)

  def init(key, params):
    return {"feedback": random_feedback(key, spec, scale, params["w_out"].dtype)}

  def grads(params, state, traj, errors, key):
    del key
    return trace_grads(
      params, spec, traj, errors, state["feedback"], adaptive=not leak_only, **flags
    )

  return GradientRule(name=name, init=init, grads=grads)


def make_eprop_random(spec: LIFSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _random_feedback_rule("eprop_random", spec, options, leak_only=False)


def make_rflo(spec: LIFSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _random_feedback_rule("rflo", spec, options, leak_only=True)


def _make_mdgl(name: str, modulation_fn, spec: LIFSpec, options) -> GradientRule:
  flags = _flags(options)
  if flags["online"] and spec.kappa != 0.0:
    raise ValueError(
      f"{name} online needs model kappa = 0 (the modulatory signal of a leaky readout "
      f"depends on later errors); got kappa={spec.kappa}"
    )

  def grads(params, state, traj, errors, key):
    del state, key
    return trace_grads(
      params,
      spec,
      traj,
      errors,
      params["w_out"].T,
      adaptive=True,
      modulation=modulation_fn(params, spec),
      **flags,
    )

  return GradientRule(name=name, init=no_state, grads=grads)


def make_mdgl(spec: LIFSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _make_mdgl("mdgl", mdgl.type_modulation, spec, options)


def make_mdgl_exact(spec: LIFSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _make_mdgl(
    "mdgl_exact",
    lambda p, s: matrix_modulation(mdgl.exact_one_hop_weights(p, s)),
    spec,
    options,
  )


FACTORIES = {
  "bptt": make_bptt,
  "eprop": make_eprop,
  "eprop_random": make_eprop_random,
  "rflo": make_rflo,
  "mdgl": make_mdgl,
  "mdgl_exact": make_mdgl_exact,
}


def names() -> tuple[str, ...]:
  return tuple(sorted(FACTORIES))


def make(
  name: str, spec: LIFSpec, options: ml_collections.ConfigDict | None = None
) -> GradientRule:
  """Builds spiking rule ``name``; options missing from ``options`` take their defaults."""
  if name not in FACTORIES:
    raise ValueError(f"spiking rule must be one of {names()}, got {name!r}")
  return FACTORIES[name](spec, options if options is not None else ml_collections.ConfigDict())
