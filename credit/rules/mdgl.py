r"""MDGL (Liu et al., PNAS 2021): e-prop plus a one-hop, cell-type-modulated term.

Rate-RNN form (rules.md §1.8). The influence tensor keeps the neuron's own
trace and one recurrent hop to its postsynaptic targets:

.. math::

  M_t[k, (p, :)] \approx \delta_{kp} E_t[p, :] + (1-\delta_{kp}) D_{t,k} \tilde W_{kp}
  E_{t-1}[p, :],

so that, with :math:`q_t = W_{out}^\top e_t`, :math:`z_t = D_t \odot q_t` and the
e-prop trace :math:`E_t` (:mod:`credit.rules.eprop`, including its
``self_coupling`` option),

.. math::

  \nabla W_{p,:} = \sum_t q_{t,p} E_t[p, :] + m_{t,p} E_{t-1}[p, :], \qquad
  m_{t,p} = \sum_{k \ne p} \tilde W_{kp} z_{t,k}.

* ``mdgl``: :math:`\tilde W_{kp} = \bar W_{c(k) c(p)}` on the synapses
  :math:`k \ne p` the sum runs over, where :math:`\bar W_{ab}` is the mean of
  the recurrent weights from cell type ``b`` to type ``a``, recomputed from the
  current weights at every call (an empty block has mean 0). With Dale's law
  the types are E and I and the means carry their sign; without it there is
  one type and :math:`\bar W` is a scalar. ``rule_options.modulatory_synapses``
  chooses the synapses:

  - ``"existing"`` (default, the reference code's ``NP_mode 3``): the sum runs
    over the existing synapses only, :math:`\tilde W_{kp} = [W_{kp} \ne 0]\,
    \bar W_{c(k)c(p)}`, and :math:`\bar W` is the mean of the existing (non-zero,
    unmasked) weights. Synapses that Dale's projection has set to zero carry no
    modulatory signal. Computed as a dense ``N x N`` product per step.
  - ``"all"``: the same means, but the sum runs over every :math:`k \ne p`,
    silent synapses included (they remain plastic in this model, so they can be
    read as silent connections rather than removed ones). Neuron ``p`` then
    needs only the per-type sums :math:`S_{t,a} = \sum_{k \in a} z_{t,k}` (one
    diffuse neuromodulator per cell type), which is also how it is computed:
    :math:`m_{t,p} = \sum_a \bar W_{a c(p)} S_{t,a} - \bar W_{c(p)c(p)} z_{t,p}`,
    ``O(N C)`` per step instead of ``O(N^2)``.
  - ``"dense"``: the sum over every :math:`k \ne p` and :math:`\bar W` the mean
    over all allowed entries of the block, zeros included (the reference code's
    ``NP_mode 5``, and ModProp's averaging); factored as ``"all"``.

  Without zero weights (no Dale's law, no masked synapses but the diagonal)
  the three coincide.
* ``mdgl_exact``: :math:`\tilde W = W_{rec}` off the diagonal (the exact
  two-step truncation, the reference code's ``NP_mode 2`` / ``custom_mode 2``).

Online, the modulatory term pairs :math:`m_t` with the previous trace (one
extra ``N x m`` buffer); the offline form folds it into the learning signal,
:math:`\tilde L_t = q_t + m_{t+1}` (the reference code's one-step-later form).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, cell_types, effective_w_rec, recurrent_mask
from credit.rules.base import GradientRule, no_state
from credit.rules.eprop import Modulation, matrix_modulation, trace_grads, trace_steps

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def _type_onehot(spec: RNNSpec, dtype) -> jax.Array:
  types = cell_types(spec)
  return jnp.asarray(np.eye(int(types.max()) + 1)[types], dtype)  # [N, C]


SYNAPSES = ("existing", "all", "dense")


def block_means(params: Params, spec: RNNSpec, zeros_included: bool = False) -> jax.Array:
  r"""Cell-type block means :math:`\bar W` ``[C(post), C(pre)]`` of the recurrent weights.

  Args:
    params: network parameters.
    spec: the network (cell types, synapse mask).
    zeros_included: average over every allowed (unmasked) entry of a block,
      zeros included; otherwise over the existing (non-zero) synapses only.

  Returns:
    The means; a block with nothing to average has mean 0.
  """
  w = effective_w_rec(params, spec)
  allowed = recurrent_mask(spec, w.dtype)
  counted = allowed if zeros_included else ((w != 0) & (allowed > 0)).astype(w.dtype)
  onehot = _type_onehot(spec, w.dtype)
  block_sum = onehot.T @ (w * counted) @ onehot
  block_count = onehot.T @ counted @ onehot
  return block_sum / jnp.maximum(block_count, 1.0)


def type_averaged_weights(params: Params, spec: RNNSpec, synapses: str = "existing") -> jax.Array:
  r"""The modulatory weights :math:`\tilde W` ``[N(post), N(pre)]`` as a dense matrix.

  :math:`\bar W_{c(k)c(p)}` with a zero diagonal, and, for ``synapses="existing"``,
  zero wherever :math:`W_{kp} = 0` (see the module docstring).
  """
  _check_synapses(synapses)
  w = effective_w_rec(params, spec)
  onehot = _type_onehot(spec, w.dtype)
  dense = onehot @ block_means(params, spec, synapses == "dense") @ onehot.T
  dense = dense * (1.0 - jnp.eye(spec.n_hidden, dtype=dense.dtype))
  if synapses == "existing":
    dense = dense * (w != 0).astype(w.dtype)
  return dense


def type_modulation(params: Params, spec: RNNSpec, synapses: str = "existing") -> Modulation:
  r"""``z -> m``, :math:`m_p = \sum_{k \ne p} \tilde W_{kp} z_k`.

  ``"existing"``: a dense product with :func:`type_averaged_weights`;
  ``"all"``/``"dense"``: factored through the per-type sums,
  :math:`m_p = \sum_a \bar W_{a c(p)} S_a - \bar W_{c(p)c(p)} z_p`.
  """
  _check_synapses(synapses)
  if synapses == "existing":
    return matrix_modulation(type_averaged_weights(params, spec, synapses))
  means = block_means(params, spec, synapses == "dense")
  onehot = _type_onehot(spec, means.dtype)
  per_type = means @ onehot.T  # [C(post), N(pre)]: W̄_{a, c(p)}
  self_term = jnp.diagonal(onehot @ per_type)  # the k = p path belongs to the trace

  def modulate(z: jax.Array) -> jax.Array:
    return (z @ onehot) @ per_type - self_term * z

  return modulate


def _check_synapses(synapses: str) -> None:
  if synapses not in SYNAPSES:
    raise ValueError(
      f"rule_options.modulatory_synapses must be one of {SYNAPSES}, got {synapses!r}"
    )


def exact_one_hop_weights(params: Params, spec: RNNSpec) -> jax.Array:
  """``mdgl_exact``'s modulatory weights: the effective ``W_rec`` off the diagonal."""
  w = effective_w_rec(params, spec)
  return w * (1.0 - jnp.eye(spec.n_hidden, dtype=w.dtype))


def _make(name: str, modulation_fn, spec: RNNSpec, options: ml_collections.ConfigDict):
  self_coupling, online = bool(options.self_coupling), bool(options.online)
  first, loss_steps = trace_steps(spec, options, self_coupling, modulated=True)

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
      modulation=modulation_fn(params, spec),
      loss_steps=loss_steps,
    )

  return GradientRule(name=name, init=no_state, grads=grads, first_step=first)


def make_mdgl(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  synapses = str(options.modulatory_synapses)
  _check_synapses(synapses)
  return _make("mdgl", lambda p, s: type_modulation(p, s, synapses), spec, options)


def make_mdgl_exact(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _make(
    "mdgl_exact", lambda p, s: matrix_modulation(exact_one_hop_weights(p, s)), spec, options
  )
