r"""DNI (Jaderberg et al., ICML 2017): a learned synthetic gradient for the future-facing credit.

A linear module predicts the credit :math:`c_t = \partial L_{\ge t} / \partial h_t`
(immediate and future, rules.md §0, §1.12) from what the network has at step
``t``, and the weight gradient uses it in place of BPTT's backward pass:

.. math::

  \hat c_t = A \tilde a_t, \qquad \tilde a_t = [h_t;\; e_t;\; 1], \qquad
  \nabla W = \sum_t (D_t \odot \hat c_t) \hat a_t^\top,

with :math:`D_t = \alpha\phi'(u_t)`, :math:`\hat a_t = [h_{t-1}; x_t; 1]`, the readout
gradients exact and :math:`A \in R^{N \times (N + N_{out} + 1)}`. It is online
(each step's gradient needs only that step) and has no offline form to speak of.

**The label input.** vanilla-rtrl feeds the label :math:`y^*_t` to the module.
A rule here sees the output errors :math:`e_t = \partial L/\partial y_t`, which
for the tasks' losses are a function of :math:`y^*_t` and
:math:`y_t = W_{out} h_t + b_{out}` (and zero where the loss mask is), so
:math:`e_t` takes the label's place. Errors are those of the batch-mean loss;
the module works per example (:math:`e_t` and :math:`\hat c_t` scaled by the
batch size ``B``) so that its weights do not depend on ``B``.

**Learning A by bootstrapping** (:attr:`~credit.rules.base.GradientRule.update_state`),
once per training batch with one SGD step (``rule_options.dni_learning_rate``)
on :math:`\frac12 \langle \|A\tilde a_t - \tau_t\|^2 \rangle` (mean over batch and
steps) towards the one-step target

.. math::

  \tau_t = q_t + J_{t+1}^\top \hat c^-_{t+1} \;(t < T), \qquad \tau_T = q_T,

with :math:`q_t = W_{out}^\top e_t`, the exact Jacobian
:math:`J_{t+1} = (1-\alpha) I + \mathrm{diag}(D_{t+1}) W_{rec}` (vanilla's default;
its ``use_approx_J`` is not offered) and :math:`\hat c^-` the prediction of the
module as it was before the update (held fixed: vanilla's target network,
refreshed every update here since the update is once per batch rather than
once per step). Sequences end, so the last step's target is exact. SGD, not
Adam: Adam's per-entry normalization moves the many near-zero weights of the
module as fast as the others, and on the seq-MNIST smoke run that drove the
network unstable within ~130 steps (at aux learning rates 1e-3 and 1e-4).

**Initial state.** :math:`A = [0, W_{out}^\top, 0]`: the module starts at the
immediate credit :math:`\hat c_t = q_t` (vanilla draws
:math:`A \sim N(0, 1/(N + N_{out} + 1))`, which with this task's credit scale
would start from a random gradient). The state ``{"a", "opt"}`` is per seed.

Cost per step: ``N (N + N_out)`` for the prediction and the same for its update
(plus the ``N^2`` Jacobian product of the target).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules.base import GradientRule, input_grads, learning_signal, readout_grads

import jax
import jax.numpy as jnp
import ml_collections
import optax


def module_inputs(traj: Trajectory, errors: jax.Array) -> jax.Array:
  r""":math:`\tilde a_t = [h_t; B e_t; 1]` ``[B, T, N + N_out + 1]`` (per-example errors)."""
  ones = jnp.ones(traj.h.shape[:2] + (1,), traj.h.dtype)
  return jnp.concatenate([traj.h, errors.shape[0] * errors, ones], axis=-1)


def synthetic_credit(a: jax.Array, traj: Trajectory, errors: jax.Array) -> jax.Array:
  r""":math:`\hat c_t` of the batch-mean loss, ``[B, T, N]``."""
  return module_inputs(traj, errors) @ a.T / errors.shape[0]


def dni_grads(params: Params, spec: RNNSpec, traj: Trajectory, errors: jax.Array, a: jax.Array):
  """DNI's gradient (exact readout) for the module weights ``a``."""
  delta = spec.alpha * traj.dphi * synthetic_credit(a, traj, errors)
  return {**input_grads(delta, traj, spec), **readout_grads(traj, errors)}


def bootstrap_targets(params: Params, spec: RNNSpec, traj: Trajectory, errors, a) -> jax.Array:
  r"""Per-example targets :math:`B (q_t + J_{t+1}^\top \hat c_{t+1})`, :math:`B q_T` at the end."""
  batch = errors.shape[0]
  q = learning_signal(params["w_out"].T, errors) * batch
  c_hat = synthetic_credit(a, traj, errors) * batch
  d = spec.alpha * traj.dphi
  w = effective_w_rec(params, spec)
  nxt = (1.0 - spec.alpha) * c_hat[:, 1:] + (d[:, 1:] * c_hat[:, 1:]) @ w  # J_{t+1}^T c_{t+1}
  return q + jnp.concatenate([nxt, jnp.zeros_like(q[:, :1])], axis=1)


def module_fit_grad(params, spec: RNNSpec, traj: Trajectory, errors: jax.Array, a: jax.Array):
  """Gradient of the bootstrapped fit w.r.t. ``a`` and its mean squared error."""
  inputs = module_inputs(traj, errors)
  target = jax.lax.stop_gradient(bootstrap_targets(params, spec, traj, errors, a))
  err = inputs @ a.T - target
  count = inputs.shape[0] * inputs.shape[1]
  return jnp.einsum("btn,btm->nm", err, inputs) / count, jnp.sum(err**2) / count


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  optimizer = optax.sgd(float(options.dni_learning_rate))

  def init(key, params):
    del key
    n = spec.n_hidden
    dtype = params["w_out"].dtype
    a = jnp.concatenate(
      [jnp.zeros((n, n), dtype), params["w_out"].T, jnp.zeros((n, 1), dtype)], axis=1
    )
    return {"a": a, "opt": optimizer.init(a)}

  def grads(params, state, traj, errors, key):
    del key
    return dni_grads(params, spec, traj, errors, state["a"])

  def update_state(params, state, traj, errors, key):
    del key
    g, _ = module_fit_grad(params, spec, traj, errors, state["a"])
    updates, opt = optimizer.update(g, state["opt"], state["a"])
    return {"a": optax.apply_updates(state["a"], updates), "opt": opt}

  return GradientRule(name="dni", init=init, grads=grads, update_state=update_state)
