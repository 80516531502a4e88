r"""Spiking networks of LIF and ALIF neurons as pure functions over a params pytree.

The network (weights ``W[post, pre]``, one step per time bin, at rest at ``t = 0``):

.. math::

  v_t = \alpha v_{t-1} + (1-\alpha)(W_{rec} z_{t-1} + W_{in} x_t + b) - v_{th} z_{t-1},
  \qquad a_t = \rho a_{t-1} + z_{t-1},

.. math::

  A_t = v_{th} + \beta_i a_t, \qquad
  z_t = H\!\left(\frac{v_t - A_t}{v_{th}}\right) (1 - \mathrm{ref}_t), \qquad
  \bar z_t = \kappa \bar z_{t-1} + (1-\kappa) z_t, \qquad
  y_t = W_{out} \bar z_t + b_{out}.

* Reset by subtraction (``- v_th z_{t-1}``); ``beta_i = beta`` for the first
  ``round(frac_adaptive * N)`` units (ALIF, Bellec et al. 2018/2020) and 0 for
  the others (LIF). With Dale's law the excitatory units come first, so the
  adaptive ones are excitatory while ``frac_adaptive <= frac_exc``.
* ``ref_t = 1`` for ``n_refractory`` steps after a spike: the unit cannot spike
  and its pseudo-derivative is zero (the gate is a constant for autodiff).
* ``no_autapse`` and ``dale`` are the rate model's constraints, enforced with the
  same helpers (:func:`credit.models.rnn.recurrent_mask`,
  :func:`credit.models.rnn.project`); :class:`LIFSpec` carries the fields they read.
* ``b`` is a constant input current (zero at initialization); it keeps the
  parameter pytree and the packed presynaptic vector ``[z_{t-1}; x_t; 1]`` of
  the rate model, so that :mod:`credit.rules.base` helpers apply unchanged.

**The spike nonlinearity** ``H`` is a ``jax.custom_jvp`` (:func:`spike_function`)
whose derivative is the pseudo-derivative :math:`\psi` of a :class:`Surrogate`
(in units of the normalized distance to threshold ``x = (v - A)/v_th``, so
:math:`\partial z / \partial v = \psi(x) / v_{th}`):

* ``triangle`` (Bellec et al. 2018): :math:`\psi(x) = \gamma \max(0, 1 - |x|/w)`;
* ``superspike`` (fast sigmoid, Zenke & Ganguli 2018):
  :math:`\psi(x) = \gamma / (1 + |x|/w)^2`;
* ``sigmoid`` (smooth everywhere): :math:`\psi(x) = 4 \gamma \sigma(x/w)(1 - \sigma(x/w))`.

Second derivatives (forward-over-reverse, as the curvature code takes them)
are defined by ``Surrogate.second_order``:

* ``"surrogate"``: the jvp rule returns its primal output as
  :math:`H(x) + (S(x) - \mathrm{sg}(S(x)))` with :math:`S' = \psi`
  (:func:`surrogate_antiderivative`; ``sg`` is ``stop_gradient``): the value is
  exactly ``H(x)`` and its own derivative is ``psi``, so at every order
  ``H' := psi`` and ``H'' := psi'`` (the derivative of the formula for ``psi``).
  The Hessian of the loss is then that of a smooth network whose nonlinearity
  matches ``(H, psi, psi')`` at every evaluated point: it is **symmetric**. (For
  the triangle, ``psi'`` is piecewise constant.) Calling the custom function
  itself inside its rule would not do this: inside ``lax.scan`` the nested
  call's rule is dropped by partial evaluation (measured), which gives
  ``"frozen"``.
* ``"frozen"``: the jvp rule computes its primal output with a comparison, whose
  derivative is zero: spikes are held fixed, as they are for any small enough
  change of the weights. ``jax.jvp(jax.grad(loss))`` is then the true (almost
  everywhere) Jacobian of the surrogate-gradient map ``theta -> g(theta)`` that
  training follows; it is **not symmetric** in general.

**Smoothed proxy**: with ``proxy_temperature = tau > 0`` the forward pass uses
:math:`z = \sigma(x / \tau)` instead of ``H`` (ordinary autodiff; the
refractory gate still follows the hard events ``x > 0``), a smooth network
whose Hessian is an ordinary Hessian (:func:`smoothed`).

The forward pass returns every state the learning rules need
(:class:`SpikingTrajectory`), mirroring :mod:`credit.models.rnn`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from credit.models import rnn
from credit.models.rnn import Params

import jax
import jax.numpy as jnp
import numpy as np

SURROGATES = ("triangle", "superspike", "sigmoid")
SECOND_ORDERS = ("surrogate", "frozen")


class Surrogate(NamedTuple):
  """The pseudo-derivative of the spike nonlinearity.

  Attributes:
    kind: one of :data:`SURROGATES`.
    gamma: peak height :math:`\\gamma` (0.3 in Bellec et al.).
    width: width ``w`` in units of ``v_th`` (1 in Bellec et al.).
    second_order: ``"surrogate"`` or ``"frozen"``, see the module docstring.
  """

  kind: str = "triangle"
  gamma: float = 0.3
  width: float = 1.0
  second_order: str = "surrogate"


def pseudo_derivative(x: jax.Array, surrogate: Surrogate) -> jax.Array:
  r""":math:`\psi(x)` at the normalized distance to threshold ``x = (v - A) / v_th``."""
  g, w = surrogate.gamma, surrogate.width
  if surrogate.kind == "triangle":
    return g * jnp.maximum(0.0, 1.0 - jnp.abs(x) / w)
  if surrogate.kind == "superspike":
    return g / (1.0 + jnp.abs(x) / w) ** 2
  if surrogate.kind == "sigmoid":
    s = jax.nn.sigmoid(x / w)
    return 4.0 * g * s * (1.0 - s)
  raise ValueError(f"surrogate.kind must be one of {SURROGATES}, got {surrogate.kind!r}")


def surrogate_antiderivative(x: jax.Array, surrogate: Surrogate) -> jax.Array:
  r"""A smooth :math:`S` with :math:`S' = \psi` (the "soft spike" the surrogate differentiates)."""
  g, w = surrogate.gamma, surrogate.width
  u = x / w
  if surrogate.kind == "triangle":
    u = jnp.clip(u, -1.0, 1.0)
    return g * w * (u - u * jnp.abs(u) / 2.0)
  if surrogate.kind == "superspike":
    return g * w * u / (1.0 + jnp.abs(u))
  if surrogate.kind == "sigmoid":
    return 4.0 * g * w * jax.nn.sigmoid(u)
  raise ValueError(f"surrogate.kind must be one of {SURROGATES}, got {surrogate.kind!r}")


def _heaviside(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x)
  return (x > 0).astype(x.dtype)


@functools.cache
def spike_function(surrogate: Surrogate):
  """``H(x)`` (exactly 0 or 1) as a ``jax.custom_jvp`` with derivative ``psi(x)``.

  One function per (hashable) :class:`Surrogate`, cached so that jit sees the
  same callable each time.
  """
  if surrogate.second_order not in SECOND_ORDERS:
    raise ValueError(
      f"surrogate.second_order must be one of {SECOND_ORDERS}, got {surrogate.second_order!r}"
    )
  pseudo_derivative(jnp.zeros(()), surrogate)  # validates the kind

  @jax.custom_jvp
  def spike(x):
    return _heaviside(x)

  @spike.defjvp
  def spike_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    # The primal through ``spike`` itself carries psi to the next order; through the
    # comparison it carries zero (spikes frozen).
    out = _heaviside(x)
    if surrogate.second_order == "surrogate":
      soft = surrogate_antiderivative(x, surrogate)
      out = out + (soft - jax.lax.stop_gradient(soft))
    return out, pseudo_derivative(x, surrogate) * dx

  return spike


class LIFSpec(NamedTuple):
  """Static description of a spiking network (hashable, safe to close over in jit).

  Attributes:
    n_in, n_hidden, n_out: sizes.
    alpha: membrane decay :math:`\\alpha = e^{-dt/\\tau_m}` in ``[0, 1)``.
    v_th: firing threshold (> 0).
    kappa: readout decay :math:`\\kappa \\in [0, 1)` (0: the readout sees ``z_t``).
    n_refractory: refractory steps after a spike (0: none).
    frac_adaptive: fraction of ALIF units (the first ``round(frac * N)``).
    beta: threshold adaptation strength of the ALIF units.
    rho: adaptation decay :math:`\\rho = e^{-dt/\\tau_a}` in ``[0, 1)``.
    surrogate: the pseudo-derivative, :class:`Surrogate`.
    proxy_temperature: 0 for spikes; ``tau > 0`` for the smoothed proxy
      :math:`z = \\sigma(x / \\tau)`.
    init_gain: factor on the initial ``W_in`` and ``W_rec`` (the input enters
      with ``1 - alpha``, so a network at the rate model's scale may stay
      silent, and a silent unit far below threshold has ``psi = 0``).
    no_autapse, dale, frac_exc: as in :class:`credit.models.rnn.RNNSpec`.
  """

  n_in: int
  n_hidden: int
  n_out: int
  alpha: float = 0.95
  v_th: float = 1.0
  kappa: float = 0.9
  n_refractory: int = 0
  frac_adaptive: float = 0.0
  beta: float = 0.02
  rho: float = 0.99
  surrogate: Surrogate = Surrogate()
  proxy_temperature: float = 0.0
  init_gain: float = 1.0
  no_autapse: bool = True
  dale: bool = False
  frac_exc: float = 0.8

  @property
  def n_exc(self) -> int:
    return int(round(self.frac_exc * self.n_hidden)) if self.dale else self.n_hidden

  @property
  def n_adaptive(self) -> int:
    return int(round(self.frac_adaptive * self.n_hidden))


def validate(spec: LIFSpec) -> None:
  """Raises ``ValueError`` naming the first field out of its range."""
  checks = (
    ("alpha", 0.0 <= spec.alpha < 1.0, "in [0, 1)"),
    ("v_th", spec.v_th > 0, "> 0"),
    ("kappa", 0.0 <= spec.kappa < 1.0, "in [0, 1)"),
    ("n_refractory", isinstance(spec.n_refractory, int) and spec.n_refractory >= 0, "an int >= 0"),
    ("frac_adaptive", 0.0 <= spec.frac_adaptive <= 1.0, "in [0, 1]"),
    ("beta", spec.beta >= 0, ">= 0"),
    ("rho", 0.0 <= spec.rho < 1.0, "in [0, 1)"),
    ("proxy_temperature", spec.proxy_temperature >= 0, ">= 0"),
    ("init_gain", spec.init_gain > 0, "> 0"),
    ("frac_exc", 0.0 <= spec.frac_exc <= 1.0, "in [0, 1]"),
  )
  for name, ok, allowed in checks:
    if not ok:
      raise ValueError(f"LIFSpec.{name} must be {allowed}, got {getattr(spec, name)!r}")
  if spec.surrogate.kind not in SURROGATES:
    raise ValueError(f"surrogate.kind must be one of {SURROGATES}, got {spec.surrogate.kind!r}")
  # A zero-width or non-positive pseudo-derivative passes no gradient through a spike (or
  # the wrong sign): training would run and learn nothing, or ascend.
  for name in ("gamma", "width"):
    value = getattr(spec.surrogate, name)
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f"model.surrogate_{name} must be a finite number > 0, got {value!r}")
  if spec.surrogate.second_order not in SECOND_ORDERS:
    raise ValueError(
      f"surrogate.second_order must be one of {SECOND_ORDERS}, got {spec.surrogate.second_order!r}"
    )


def spec_from_config(model, n_in: int, n_out: int) -> LIFSpec:
  """A :class:`LIFSpec` from a ``config.model`` block (absent fields take their defaults).

  Fields: ``n_hidden`` and any :class:`LIFSpec` field by name; the surrogate as
  ``surrogate`` (its kind), ``surrogate_gamma``, ``surrogate_width``.

  Raises:
    ValueError: naming the field, for a value out of range.
  """
  defaults = LIFSpec(n_in, 1, n_out)
  fields = {
    name: type(getattr(defaults, name))(model.get(name, getattr(defaults, name)))
    for name in LIFSpec._fields
    if name not in ("n_in", "n_hidden", "n_out", "surrogate")
  }
  surrogate = Surrogate(
    kind=str(model.get("surrogate", defaults.surrogate.kind)),
    gamma=float(model.get("surrogate_gamma", defaults.surrogate.gamma)),
    width=float(model.get("surrogate_width", defaults.surrogate.width)),
  )
  spec = LIFSpec(n_in, int(model.n_hidden), n_out, surrogate=surrogate, **fields)
  validate(spec)
  return spec


def smoothed(spec: LIFSpec, temperature: float) -> LIFSpec:
  """The smoothed proxy of ``spec``: ``H`` replaced by ``sigmoid(x / temperature)``."""
  if not temperature > 0:
    raise ValueError(f"the proxy temperature must be > 0, got {temperature!r}")
  return spec._replace(proxy_temperature=float(temperature))


def adaptation_strength(spec: LIFSpec, dtype=jnp.float32) -> jax.Array:
  """``beta_i`` per unit ``[N]``: ``beta`` for the ALIF units, 0 for the LIF ones."""
  return jnp.asarray(np.where(np.arange(spec.n_hidden) < spec.n_adaptive, spec.beta, 0.0), dtype)


class SpikingTrajectory(NamedTuple):
  """Every state of one forward pass, batch-major ``[B, T, .]`` (the network starts at rest).

  Attributes:
    x: inputs ``x_1 .. x_T``.
    v: membrane potentials ``v_1 .. v_T``.
    a: adaptation variables ``a_1 .. a_T``.
    z: spikes ``z_1 .. z_T`` (exactly 0 or 1 unless the spec is a smoothed proxy).
    psi: :math:`\\psi_t = \\partial z_t / \\partial v_t` (zero while refractory);
      :math:`\\partial z_t / \\partial a_t = -\\beta \\psi_t`.
    zbar: the readout's filtered spikes :math:`\\bar z_t`.
    y: readouts ``y_1 .. y_T``.
  """

  x: jax.Array
  v: jax.Array
  a: jax.Array
  z: jax.Array
  psi: jax.Array
  zbar: jax.Array
  y: jax.Array

  @property
  def z_prev(self) -> jax.Array:
    """``z_0 .. z_{T-1}`` (``z_0 = 0``): the presynaptic recurrent input at each step."""
    return jnp.concatenate([jnp.zeros_like(self.z[:, :1]), self.z[:, :-1]], axis=1)


def init_params(key: jax.Array, spec: LIFSpec, dtype=jnp.float32) -> Params:
  """The rate model's initialization (:func:`credit.models.rnn.init_params`, Dale included),
  with ``W_in`` and ``W_rec`` scaled by ``spec.init_gain``."""
  validate(spec)
  params = rnn.init_params(key, spec, dtype)
  gain = jnp.asarray(spec.init_gain, dtype)
  return {**params, "w_in": gain * params["w_in"], "w_rec": gain * params["w_rec"]}


def effective_w_rec(params: Params, spec: LIFSpec) -> jax.Array:
  """The recurrent matrix the dynamics use (zero diagonal without autapses)."""
  return rnn.effective_w_rec(params, spec)


def project(params: Params, spec: LIFSpec) -> Params:
  """Restores no-autapse and Dale's law after an update (:func:`credit.models.rnn.project`)."""
  return rnn.project(params, spec)


def _spikes_and_psi(x: jax.Array, spec: LIFSpec):
  """``z`` and :math:`\\partial z / \\partial x` at normalized distances ``x``, ungated."""
  tau = spec.proxy_temperature
  if tau > 0:
    s = jax.nn.sigmoid(x / tau)
    return s, s * (1.0 - s) / tau
  return spike_function(spec.surrogate)(x), pseudo_derivative(x, spec.surrogate)


def _scan(params: Params, spec: LIFSpec, inputs: jax.Array, noise: jax.Array | None, keep: bool):
  """Runs the cell; returns time-major ``(v, a, z, psi, zbar)`` or ``zbar`` alone."""
  validate(spec)
  batch = inputs.shape[0]
  dtype = params["w_rec"].dtype
  n = spec.n_hidden
  w_rec_t = effective_w_rec(params, spec).T
  beta = adaptation_strength(spec, dtype)
  drive = rnn.input_drive(params, inputs)
  if noise is not None:
    drive = drive + jnp.swapaxes(noise, 0, 1)
  alpha, v_th, kappa, rho = spec.alpha, spec.v_th, spec.kappa, spec.rho

  def body(carry, d):
    v, a, z, ref, zbar = carry
    v = alpha * v + (1.0 - alpha) * (z @ w_rec_t + d) - v_th * z
    a = rho * a + z
    x = (v - v_th - beta * a) / v_th
    z_new, dz_dx = _spikes_and_psi(x, spec)
    if spec.n_refractory > 0:
      free = (ref == 0).astype(dtype)
      z_new = z_new * free
      dz_dx = dz_dx * free
      fired = jax.lax.stop_gradient(x > 0) & (ref == 0)
      ref = jnp.where(fired, spec.n_refractory, jnp.maximum(ref - 1, 0))
    zbar = kappa * zbar + (1.0 - kappa) * z_new
    out = (v, a, z_new, dz_dx / v_th, zbar) if keep else zbar
    return (v, a, z_new, ref, zbar), out

  zeros = jnp.zeros((batch, n), dtype)
  init = (zeros, zeros, zeros, jnp.zeros((batch, n), jnp.int32), zeros)
  _, out = jax.lax.scan(body, init, drive)
  return out


def forward(
  params: Params, spec: LIFSpec, inputs: jax.Array, noise: jax.Array | None = None
) -> SpikingTrajectory:
  """Runs the network over ``inputs [B, T, N_in]`` and returns the whole trajectory.

  Args:
    params: network parameters (``w_in``, ``w_rec``, ``b``, ``w_out``, ``b_out``).
    spec: the network spec.
    inputs: ``[B, T, N_in]`` (spikes or any real input current).
    noise: optional current noise ``[B, T, N]`` added to ``W_in x_t + b``
      (inside the ``1 - alpha`` factor), for the training-time noise remedy.

  Returns:
    The :class:`SpikingTrajectory`.
  """
  v, a, z, psi, zbar = (jnp.swapaxes(s, 0, 1) for s in _scan(params, spec, inputs, noise, True))
  y = zbar @ params["w_out"].T + params["b_out"]
  return SpikingTrajectory(x=inputs, v=v, a=a, z=z, psi=psi, zbar=zbar, y=y)


def outputs(params: Params, spec: LIFSpec, inputs: jax.Array) -> jax.Array:
  """Readouts ``y [B, T, N_out]`` only (for evaluation, curvature and fused BPTT)."""
  zbar = jnp.swapaxes(_scan(params, spec, inputs, None, False), 0, 1)
  return zbar @ params["w_out"].T + params["b_out"]


def outputs_in_chunks(
  params: Params,
  spec: LIFSpec,
  inputs: jax.Array,
  chunk_size: int,
  steps: tuple[int, ...] | None = None,
) -> jax.Array:
  """:func:`outputs` over ``chunk_size`` examples at a time (as the rate model's)."""
  return rnn.map_in_chunks(
    lambda xb: rnn.at_steps(outputs(params, spec, xb), steps), inputs, chunk_size
  )
