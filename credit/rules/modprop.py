r"""ModProp (Liu et al., NeurIPS 2022): credit through surrogate backward dynamics.

BPTT's backward pass (:mod:`credit.rules.bptt`) with the Jacobian replaced by a
surrogate :math:`\tilde J_t` that keeps every hop but approximates the
cross-neuron ones (rules.md §1.9):

.. math::

  \tilde J_{t, kk} = (1-\alpha) + D_{t,k} W_{rec,kk}, \qquad
  \tilde J_{t, kp} = \alpha \mu \tilde W_{kp} \quad (k \ne p),

.. math::

  c_T = q_T, \qquad c_t = q_t + \tilde J_{t+1}^\top c_{t+1}, \qquad
  \nabla W = \sum_t (D_t \odot c_t) \hat a_t^\top,

with :math:`q_t = W_{out}^\top e_t`, :math:`D_t = \alpha\phi'(u_t)` and
:math:`\hat a_t = [h_{t-1}; x_t; 1]`. Two approximations, as in the reference
code (``Helena-Yuhan-Liu/ModProp``):

* **A constant derivative** :math:`\mu` (``rule_options.modprop_mu``, the
  reference's 0.25) in place of :math:`\phi'` on the recurrent path only. The
  local path keeps the exact derivative: the leak and self-coupling in
  :math:`\tilde J_{kk}` and the eligibility factor :math:`D_t` of the weight
  gradient (the reference README insists that the approximation must not enter
  the eligibility term). In this model the derivative of a cross hop sits at
  the receiving neuron ``k``; the reference's spiking cell has it at the sending
  one, so the two replace :math:`\phi'` at neighbouring positions of a path.
* **Cell-type-averaged weights** :math:`\tilde W_{kp} = \bar W_{c(k)c(p)}` from
  :func:`credit.rules.mdgl.type_averaged_weights`, recomputed from the current
  weights at every call, with the same ``rule_options.modulatory_synapses`` as
  MDGL: ``"existing"`` (default) sums over existing synapses and averages their
  weights; ``"dense"`` is the reference ModProp code's choice (block means over
  all entries, zeros included, and every :math:`k \ne p`); ``"all"`` is in
  between. The reference writes the means as :math:`|\bar W_{ab}|` with the
  Dale signs reapplied; under Dale's law a block's mean already has its
  presynaptic type's sign, so this is the same. Without Dale's law there is
  one type and :math:`\bar W` is a signed scalar.

With :math:`\tilde W` the exact off-diagonal :math:`W_{rec}` and :math:`\mu` the
exact :math:`\phi'(u_{t+1})`, :math:`\tilde J = J` and the rule is BPTT
(:func:`modprop_grads` takes both as arguments; tests check it).

**Offline form.** This is the backward (offline) form: exact for the
surrogate dynamics while the weights are fixed over the batch. The paper's
online form processes the credit at each receiving cell with fixed temporal
filter taps; with no autapses and constant :math:`\mu`,
:math:`\tilde J = (1-\alpha) I + \alpha\mu\tilde W` is time-invariant and the same
gradient reads :math:`\sum_t \sum_{d \ge 0} (\tilde J^{d\top} q_t) \odot
D_{t-d} \hat a_{t-d}^\top`, a forward-time filter with taps :math:`\tilde J^d`.
Its type-level, finitely-many-taps version is a further approximation whose
details (rules.md: "[unverified detail]") could not be established from the
reference code, so it is not implemented. Cost: BPTT's (one ``N x N`` matmul
per step backward), with the readout exact.
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules import mdgl
from credit.rules.base import GradientRule, input_grads, learning_signal, no_state, readout_grads

import jax
import jax.numpy as jnp
import ml_collections


def surrogate_credit(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  q: jax.Array,
  w_mod: jax.Array,
  mu: jax.Array | float,
) -> jax.Array:
  r"""Runs :math:`c_t = q_t + \tilde J_{t+1}^\top c_{t+1}` backward; returns :math:`D_t \odot c_t`.

  Args:
    params: network parameters (the exact diagonal of ``W_rec``).
    spec: the network.
    traj: the forward trajectory.
    q: learning signal :math:`q_t` ``[B, T, N]``.
    w_mod: :math:`\tilde W` ``[N(post), N(pre)]``; its diagonal is ignored (the
      local path is exact).
    mu: the recurrent-path derivative, a scalar or ``[B, T, N]`` (at step
      ``t + 1`` it multiplies the credit of the receiving neuron).

  Returns:
    :math:`\delta_t = D_t \odot c_t` ``[B, T, N]``.
  """
  n = spec.n_hidden
  off = w_mod * (1.0 - jnp.eye(n, dtype=w_mod.dtype))
  diag = jnp.diagonal(effective_w_rec(params, spec))
  d = spec.alpha * traj.dphi
  mu = jnp.broadcast_to(jnp.asarray(mu, d.dtype), d.shape)

  def body(carry, inputs):
    q_t, d_t, mu_t = inputs
    c = q_t + carry  # carry holds J~_{t+1}^T c_{t+1}
    local = (1.0 - spec.alpha) * c + d_t * diag * c
    return local + (spec.alpha * mu_t * c) @ off, d_t * c

  xs = tuple(jnp.swapaxes(v, 0, 1) for v in (q, d, mu))
  _, delta = jax.lax.scan(body, jnp.zeros_like(q[:, 0]), xs, reverse=True)
  return jnp.swapaxes(delta, 0, 1)


def modprop_grads(
  params: Params,
  spec: RNNSpec,
  traj: Trajectory,
  errors: jax.Array,
  w_mod: jax.Array,
  mu: jax.Array | float,
) -> Params:
  """The full gradient pytree (exact readout) for given surrogate weights and derivative."""
  q = learning_signal(params["w_out"].T, errors)
  delta = surrogate_credit(params, spec, traj, q, w_mod, mu)
  return {**input_grads(delta, traj, spec), **readout_grads(traj, errors)}


def make(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  mu, synapses = float(options.modprop_mu), str(options.modulatory_synapses)

  def grads(params, state, traj, errors, key):
    del state, key
    w_mod = mdgl.type_averaged_weights(params, spec, synapses)
    return modprop_grads(params, spec, traj, errors, w_mod, mu)

  return GradientRule(name="modprop", init=no_state, grads=grads)
