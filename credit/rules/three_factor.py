r"""The reference code's three-factor rule, by autodiff (BiolHessRNN ``custom_mode=1``).

``jax.grad`` through a forward pass in which :math:`h_{t-1}` is stop-gradiented
where it enters through ``W_rec``; the leak path :math:`(1-\alpha) h_{t-1}`
stays differentiable:

.. math::

  h_t = (1-\alpha) h_{t-1} + \alpha \phi(W_{rec}\,\mathrm{sg}(h_{t-1}) + W_{in} x_t + b).

The data loss enters through the given output errors: the gradient is the VJP
of the readouts with cotangent :math:`e_t`, so readout gradients are exact.
This equals e-prop with symmetric feedback and a leak-only trace, hence
``eprop`` on networks without autapses (with autapses, ``eprop`` also keeps
the self-coupling :math:`D_{t,i} W_{rec,ii}`, which the stop-gradient removes).
It re-runs the network, so it serves as an oracle for the hand-written rules
rather than as a fast rule.
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, activation_fns, effective_w_rec
from credit.rules.base import GradientRule, no_state

import jax
import jax.numpy as jnp
import ml_collections


def stopped_outputs(params: Params, spec: RNNSpec, traj: Trajectory) -> jax.Array:
  """Readouts ``[B, T, N_out]`` of the forward pass with the recurrent input stop-gradiented.

  Re-runs the network from ``traj.h0`` on ``traj.x``. Whatever else entered the
  stored pre-activations (e.g. activity noise injected during training) is
  recovered from ``traj.u`` and added back as a constant, so the re-run follows
  the stored trajectory exactly.
  """
  phi, _ = activation_fns(spec.activation)
  w_rec_t = effective_w_rec(params, spec).T
  clean = traj.h_prev @ w_rec_t + traj.x @ params["w_in"].T + params["b"]
  extra = jax.lax.stop_gradient(traj.u - clean)

  def body(h, inputs):
    x_t, extra_t = inputs
    u = jax.lax.stop_gradient(h) @ w_rec_t + x_t @ params["w_in"].T + params["b"] + extra_t
    h_new = (1.0 - spec.alpha) * h + spec.alpha * phi(u)
    return h_new, h_new

  xs = (jnp.swapaxes(traj.x, 0, 1), jnp.swapaxes(extra, 0, 1))
  _, h = jax.lax.scan(body, traj.h0, xs)
  return jnp.swapaxes(h, 0, 1) @ params["w_out"].T + params["b_out"]


def three_factor_grads(params: Params, spec: RNNSpec, traj: Trajectory, errors: jax.Array):
  _, vjp = jax.vjp(lambda p: stopped_outputs(p, spec, traj), params)
  (grads,) = vjp(errors)
  return grads


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  del options

  def grads(params, state, traj, errors, key):
    del state, key
    return three_factor_grads(params, spec, traj, errors)

  return GradientRule(name="three_factor_autodiff", init=no_state, grads=grads)
