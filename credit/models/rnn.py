"""Leaky rate RNN as pure functions over a params pytree.

The network, with weights stored as ``W[post, pre]``:

.. math::

  u_t = W_{rec} h_{t-1} + W_{in} x_t + b, \\qquad
  h_t = (1 - \\alpha) h_{t-1} + \\alpha \\, \\phi(u_t), \\qquad
  y_t = W_{out} h_t + b_{out}.

The forward pass returns every internal state (``h``, ``u``, ``phi'(u)``, ``y``)
because the learning rules in :mod:`credit.rules` build their gradients from
these traces and must never run the network a second time.

Structural constraints are part of the static :class:`RNNSpec`:

* ``no_autapse``: the diagonal of ``W_rec`` is multiplied by zero in the
  forward pass, so it has zero gradient and zero Hessian rows for every rule,
  and :func:`project` keeps the stored value at zero.
* ``dale``: each presynaptic unit is excitatory or inhibitory (the first
  ``round(frac_exc * N)`` units are excitatory) and every outgoing recurrent
  weight keeps that unit's sign. The sign is held by projection: after each
  update, a weight that crossed zero is set to zero (a silent synapse, as in
  the rewiring scheme of the reference code), see :func:`project`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, jax.Array]

ACTIVATIONS = ("relu", "tanh")


class RNNSpec(NamedTuple):
  """Static description of the network (hashable, safe to close over in jit)."""

  n_in: int
  n_hidden: int
  n_out: int
  alpha: float = 1.0
  activation: str = "relu"
  no_autapse: bool = True
  dale: bool = False
  frac_exc: float = 0.8

  @property
  def n_exc(self) -> int:
    return int(round(self.frac_exc * self.n_hidden)) if self.dale else self.n_hidden


class Trajectory(NamedTuple):
  """Every state of one forward pass, batch-major ``[B, T, .]``.

  Attributes:
    x: inputs ``x_1 .. x_T``.
    h0: initial state ``[B, N]``.
    h: states ``h_1 .. h_T``.
    u: pre-activations ``u_1 .. u_T``.
    dphi: ``phi'(u_t)``.
    y: readouts ``y_1 .. y_T``.
  """

  x: jax.Array
  h0: jax.Array
  h: jax.Array
  u: jax.Array
  dphi: jax.Array
  y: jax.Array

  @property
  def h_prev(self) -> jax.Array:
    """``h_0 .. h_{T-1}``: the presynaptic recurrent input at each step."""
    return jnp.concatenate([self.h0[:, None], self.h[:, :-1]], axis=1)

  def from_step(self, start: int) -> Trajectory:
    """The trajectory of steps ``start .. T-1``, started from :math:`h_{start-1}` (static)."""
    if start == 0:
      return self
    return Trajectory(
      x=self.x[:, start:],
      h0=self.h[:, start - 1],
      h=self.h[:, start:],
      u=self.u[:, start:],
      dphi=self.dphi[:, start:],
      y=self.y[:, start:],
    )


def activation_fns(name: str):
  """Returns ``(phi, phi')`` for an activation name."""
  if name == "relu":
    return jax.nn.relu, lambda u: (u > 0).astype(u.dtype)
  if name == "tanh":
    return jnp.tanh, lambda u: 1.0 - jnp.tanh(u) ** 2
  raise ValueError(f"model.activation must be one of {ACTIVATIONS}, got {name!r}")


def recurrent_mask(spec: RNNSpec, dtype=jnp.float32) -> jax.Array:
  """Allowed recurrent synapses: ones, with a zero diagonal when ``no_autapse``."""
  n = spec.n_hidden
  if spec.no_autapse:
    return jnp.asarray(1.0 - np.eye(n), dtype)
  return jnp.ones((n, n), dtype)


def presynaptic_sign(spec: RNNSpec, dtype=jnp.float32) -> jax.Array:
  """``+1`` for excitatory and ``-1`` for inhibitory units (all ``+1`` without Dale)."""
  n = spec.n_hidden
  return jnp.asarray(np.where(np.arange(n) < spec.n_exc, 1.0, -1.0), dtype)


def cell_types(spec: RNNSpec) -> np.ndarray:
  """Integer cell type per unit: 0 excitatory, 1 inhibitory (all 0 without Dale)."""
  return (np.arange(spec.n_hidden) >= spec.n_exc).astype(np.int32)


def init_params(key: jax.Array, spec: RNNSpec, dtype=jnp.float32) -> Params:
  r"""Reference initialization (BiolHessRNN).

  ``W_in ~ N(0, 2/N_in)``, ``W_rec ~ N(0, 2/N)`` with zero diagonal,
  ``W_out`` Glorot-uniform, biases zero. Under Dale's law each column takes its
  unit's sign, ``|N(0, 2/N)|`` scaled by :math:`\sqrt{n_I/n_E}` for excitatory and
  :math:`\sqrt{n_E/n_I}` for inhibitory units: the expected input is balanced
  (:math:`n_E \sqrt{n_I/n_E} = n_I \sqrt{n_E/n_I}`) and every row keeps the
  second moment of the unconstrained init, :math:`\sum_j E[W_{ij}^2] = 2`, so the
  spectral radius stays near :math:`\sqrt 2`. (Scaling only the inhibitory
  columns by :math:`n_E/n_I` balances the mean too but multiplies the second
  moment by :math:`n_E/n_I` (4 at 80% excitatory): radius 2.5 ± 0.4 at N = 64,
  unstable dynamics at initialization, lambda_max up to 1.4e3 > 2/eta.)
  """
  k_in, k_rec, k_out = jax.random.split(key, 3)
  n, n_in, n_out = spec.n_hidden, spec.n_in, spec.n_out
  w_in = jax.random.normal(k_in, (n, n_in), dtype) * jnp.sqrt(2.0 / n_in).astype(dtype)
  w_rec = jax.random.normal(k_rec, (n, n), dtype) * jnp.sqrt(2.0 / n).astype(dtype)
  if spec.dale:
    n_exc, n_inh = max(spec.n_exc, 1), max(n - spec.n_exc, 1)
    scale = jnp.where(
      presynaptic_sign(spec, dtype) > 0, np.sqrt(n_inh / n_exc), np.sqrt(n_exc / n_inh)
    ).astype(dtype)
    w_rec = jnp.abs(w_rec) * presynaptic_sign(spec, dtype) * scale
  w_rec = w_rec * recurrent_mask(spec, dtype)
  limit = np.sqrt(6.0 / (n + n_out))
  w_out = jax.random.uniform(k_out, (n_out, n), dtype, -limit, limit)
  return {
    "w_in": w_in,
    "w_rec": w_rec,
    "b": jnp.zeros((n,), dtype),
    "w_out": w_out,
    "b_out": jnp.zeros((n_out,), dtype),
  }


def effective_w_rec(params: Params, spec: RNNSpec) -> jax.Array:
  """The recurrent matrix the dynamics use: stored weights times the synapse mask."""
  return params["w_rec"] * recurrent_mask(spec, params["w_rec"].dtype)


def project(params: Params, spec: RNNSpec) -> Params:
  """Restores the structural constraints after an update.

  Zeroes the masked synapses and, under Dale's law, sets to zero every weight
  whose sign no longer matches its presynaptic unit.
  """
  w = effective_w_rec(params, spec)
  if spec.dale:
    sign = presynaptic_sign(spec, w.dtype)
    w = sign * jax.nn.relu(sign * w)
  return {**params, "w_rec": w}


def step(params: Params, spec: RNNSpec, h: jax.Array, x: jax.Array):
  """One time step. Returns ``(h_t, u_t, phi'(u_t))``."""
  phi, dphi = activation_fns(spec.activation)
  u = h @ effective_w_rec(params, spec).T + x @ params["w_in"].T + params["b"]
  h_new = (1.0 - spec.alpha) * h + spec.alpha * phi(u)
  return h_new, u, dphi(u)


def input_drive(params: Params, inputs: jax.Array) -> jax.Array:
  r"""The input drive :math:`W_{in} x_t + b` of every step, time-major ``[T, B, N]``.

  One ``[T B, N_in] x [N_in, N]`` product on the time-major inputs. Transposing the
  small inputs ``[B, T, N_in]`` first matters: the same product written with a
  time-major output (``einsum("bti,ni->tbn")``) compiled on XLA's CPU backend to a
  transposing product that took longer than the whole 28-step recurrence
  (seq-MNIST, batch 256: 2.1 ms against 1.1 ms for the forward pass,
  ``benchmarks/train_step.py``).
  """
  return jnp.swapaxes(inputs, 0, 1) @ params["w_in"].T + params["b"]


def run_state(spec: RNNSpec, w_rec_t: jax.Array, drive: jax.Array, h0: jax.Array) -> jax.Array:
  """The state after the steps of ``drive [T, B, N]`` (time-major), keeping no history.

  A scan that stacks nothing: for steps whose states no one reads, storing them
  cost more than the recurrent products (seq-MNIST, batch 256: 1.8 ms against
  1.2 ms for 28 steps).
  """
  advance = next_state(spec, w_rec_t)
  h, _ = jax.lax.scan(lambda h, d: (advance(h, d), None), h0, drive)
  return h


def next_state(spec: RNNSpec, w_rec_t: jax.Array):
  r"""``(h_{t-1}, d_t) -> h_t = (1 - lpha) h_{t-1} + lpha \phi(h_{t-1} W_{rec}^	op + d_t)``."""
  phi, _ = activation_fns(spec.activation)
  return lambda h, d: (1.0 - spec.alpha) * h + spec.alpha * phi(h @ w_rec_t + d)


def forward(
  params: Params,
  spec: RNNSpec,
  inputs: jax.Array,
  h0: jax.Array | None = None,
  noise: jax.Array | None = None,
  start: int = 0,
) -> Trajectory:
  """Runs the network over ``inputs [B, T, N_in]`` and returns its trajectory.

  The input projection is computed for all steps at once (one large matmul);
  only the recurrent matmul stays inside the scan.

  Args:
    params: network parameters.
    spec: the network spec.
    inputs: ``[B, T, N_in]``.
    h0: initial state ``[B, N]`` (zeros when omitted).
    noise: optional activity noise ``xi [B, T, N]`` added to the pre-activation,
      :math:`u_t = W_{rec} h_{t-1} + W_{in} x_t + b + \\xi_t`; the returned
      ``u`` and ``phi'(u)`` include it (training-time noise injection).
    start: the first step to record (static). Steps before it run keeping only
      the state, and the result is the trajectory of steps ``start .. T-1``
      (its ``h0`` is :math:`h_{start-1}`): equal to ``forward(...).from_step(start)``
      without storing the earlier steps, for a rule that reads no earlier step
      (:attr:`credit.rules.base.GradientRule.first_step`).

  Returns:
    The :class:`Trajectory` (of steps ``start ..`` when ``start > 0``).
  """
  phi, dphi = activation_fns(spec.activation)
  batch, n_steps = inputs.shape[:2]
  dtype = params["w_rec"].dtype
  if h0 is None:
    h0 = jnp.zeros((batch, spec.n_hidden), dtype)
  if not 0 <= start < n_steps:
    raise ValueError(f"start={start} must be a step of the {n_steps}-step inputs")
  w_rec_t = effective_w_rec(params, spec).T
  drive = input_drive(params, inputs)
  if noise is not None:
    drive = drive + jnp.swapaxes(noise, 0, 1)
  if start > 0:
    h0 = run_state(spec, w_rec_t, drive[:start], h0)
    drive, inputs = drive[start:], inputs[:, start:]

  if spec.alpha == 1.0:
    # Without a leak h_t = phi(u_t): the scan stacks u alone and h is one elementwise
    # pass after it; one stacked output instead of two makes a BPTT step ~25% cheaper.
    def body(h, d):
      u = h @ w_rec_t + d
      return phi(u), u

    _, u = jax.lax.scan(body, h0, drive)
    u = jnp.swapaxes(u, 0, 1)
    h = phi(u)
  else:

    def body(h, d):
      u = h @ w_rec_t + d
      h_new = (1.0 - spec.alpha) * h + spec.alpha * phi(u)
      return h_new, (h_new, u)

    _, (h, u) = jax.lax.scan(body, h0, drive)
    h = jnp.swapaxes(h, 0, 1)
    u = jnp.swapaxes(u, 0, 1)
  y = h @ params["w_out"].T + params["b_out"]
  return Trajectory(x=inputs, h0=h0, h=h, u=u, dphi=dphi(u), y=y)


def outputs(
  params: Params, spec: RNNSpec, inputs: jax.Array, h0: jax.Array | None = None
) -> jax.Array:
  """Readouts ``y [B, T, N_out]`` only, keeping no hidden-state history.

  For evaluation and curvature, where storing ``h`` and ``u`` for every step
  of a large evaluation set would only cost memory.
  """
  batch = inputs.shape[0]
  if h0 is None:
    h0 = jnp.zeros((batch, spec.n_hidden), params["w_rec"].dtype)
  drive = input_drive(params, inputs)
  advance = next_state(spec, effective_w_rec(params, spec).T)

  def body(h, d):
    h_new = advance(h, d)
    return h_new, h_new @ params["w_out"].T + params["b_out"]

  _, y = jax.lax.scan(body, h0, drive)
  return jnp.swapaxes(y, 0, 1)


def outputs_at_steps(
  params: Params, spec: RNNSpec, inputs: jax.Array, steps: tuple[int, ...] | None
) -> jax.Array:
  """Readouts ``y [B, len(steps), N_out]`` at the static ``steps`` only (``h_0 = 0``).

  Equal to ``at_steps(outputs(...), steps)`` without the readout of the other steps
  or of any step after the last: for the exact loss of a task with static loss steps
  (seq-MNIST: the last), whose curvature probes run it through forward-over-reverse
  autodiff. One step: the state alone is carried (:func:`run_state`); several: the
  states up to the last are stacked and read out at ``steps``. ``None``: every step.
  """
  if steps is None:
    return outputs(params, spec, inputs)
  steps = tuple(sorted(int(s) for s in steps))
  batch = inputs.shape[0]
  h0 = jnp.zeros((batch, spec.n_hidden), params["w_rec"].dtype)
  drive = input_drive(params, inputs[:, : steps[-1] + 1])
  w_rec_t = effective_w_rec(params, spec).T
  if len(steps) == 1:
    h = run_state(spec, w_rec_t, drive, h0)[:, None]  # [B, 1, N]
  else:
    advance = next_state(spec, w_rec_t)

    def body(h, d):
      h_new = advance(h, d)
      return h_new, h_new

    _, hs = jax.lax.scan(body, h0, drive)
    h = jnp.swapaxes(hs[np.asarray(steps, np.int32)], 0, 1)
  return h @ params["w_out"].T + params["b_out"]


def outputs_in_chunks(
  params: Params,
  spec: RNNSpec,
  inputs: jax.Array,
  chunk_size: int,
  steps: tuple[int, ...] | None = None,
) -> jax.Array:
  """:func:`outputs` over ``chunk_size`` examples at a time (``lax.map`` over chunks).

  The same readouts as one call, with the per-step intermediates (the input
  drive ``[T, B, N]`` above all) held for one chunk only: a whole evaluation set
  at once cost gigabytes for seq-MNIST's 10,000 test images.

  Args:
    steps: keep only these steps' readouts (``y [B, len(steps), N_out]``), e.g. a
      task's static loss steps, so that the other steps' outputs never outlive a chunk.
  """
  return map_in_chunks(lambda xb: at_steps(outputs(params, spec, xb), steps), inputs, chunk_size)


def at_steps(y: jax.Array, steps: tuple[int, ...] | None) -> jax.Array:
  """``y [B, T, ...]`` at the given steps (all of them for ``None``)."""
  return y if steps is None else y[:, np.asarray(steps, np.int32)]


def map_in_chunks(fn, inputs: jax.Array, chunk_size: int) -> jax.Array:
  """``fn(inputs)`` for a batch-wise ``fn``, ``chunk_size`` examples at a time."""
  n = inputs.shape[0]
  if n <= chunk_size:
    return fn(inputs)
  pad = -n % chunk_size
  x = jnp.pad(inputs, ((0, pad),) + ((0, 0),) * (inputs.ndim - 1))
  x = x.reshape((-1, chunk_size) + inputs.shape[1:])
  y = jax.lax.map(fn, x)
  return y.reshape((-1,) + y.shape[2:])[:n]
