r"""Noise-injection remedies, applied inside the training step.

Two kinds, set in ``config.remedies`` (both off at 0):

* ``weight_noise_std`` :math:`\sigma_w`, **perturbed gradient**: each step's
  descent direction is taken at perturbed weights,

  .. math::

    \theta_{k+1} = \theta_k - \eta\, \hat g(\theta_k + \epsilon_k), \qquad
    \epsilon_k \sim \mathcal{N}(0, \sigma_w^2 I) \text{ on } W_{in}, W_{rec}, W_{out},

  (biases are not perturbed; masked synapses of ``W_rec`` neither). The update
  is applied to the unperturbed :math:`\theta_k`. For the exact gradient this
  is SGD on the smoothed loss :math:`\mathbb{E}_\epsilon L(\theta + \epsilon)
  \approx L(\theta) + \tfrac{\sigma_w^2}{2} \mathrm{Tr}\, H`, which penalizes
  curvature; to first order the gradient changes by
  :math:`J_{rule}\,\epsilon_k` (mean 0, covariance :math:`\sigma_w^2 J J^\top`).
  Unlike Langevin noise added after the update, its effect scales with the
  local curvature, which is what the sharp-minimum argument is about.
* ``activity_noise_std`` :math:`\sigma_a`: i.i.d. Gaussian noise
  :math:`\xi_{b,t} \sim \mathcal{N}(0, \sigma_a^2 I)` added to the
  pre-activations :math:`u_t` of the **training** forward pass
  (:func:`credit.models.rnn.forward`'s ``noise``); evaluation, curvature and
  the probes stay noise-free. Every rule builds its gradient from the noisy
  trajectory. Caveat: ``three_factor_autodiff`` re-runs the network itself
  without the noise (it is an oracle for ``eprop``, which does use the noisy
  trajectory).

Both draw from a key of their own, so that turning them on leaves the batch
and rule keys of the run unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit import losses
from credit.models import rnn
from credit.rules.base import GradientRule
from credit.tasks.base import Batch, Task
from credit.training.objective import loss_and_grads

import jax
import jax.numpy as jnp
import ml_collections

# Parameters perturbed by weight noise (the weight matrices, as in the L2 penalty).
PERTURBED = losses.PENALIZED


class Noise(NamedTuple):
  """Standard deviations of the noise remedies (0: off)."""

  weight_std: float = 0.0
  activity_std: float = 0.0

  @property
  def active(self) -> bool:
    return self.weight_std > 0 or self.activity_std > 0

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> Noise:
    r = config.get("remedies")
    if r is None:
      return cls()
    return cls(float(r.weight_noise_std), float(r.activity_noise_std))


def weight_noise(key: jax.Array, params: rnn.Params, spec: rnn.RNNSpec, std: float) -> rnn.Params:
  """A weight perturbation ``eps`` with the structure of ``params``.

  ``N(0, std^2)`` entries on :data:`PERTURBED` (zero on masked synapses), zero
  on the other parameters.
  """
  names = sorted(params)
  keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
  eps = {}
  for k, v in params.items():
    if k in PERTURBED:
      eps[k] = std * jax.random.normal(keys[k], v.shape, v.dtype)
    else:
      eps[k] = jnp.zeros_like(v)
  eps["w_rec"] = eps["w_rec"] * rnn.recurrent_mask(spec, eps["w_rec"].dtype)
  return eps


def activity_noise(key: jax.Array, batch: Batch, spec: rnn.RNNSpec, std: float, dtype) -> jax.Array:
  """Pre-activation noise ``xi [B, T, N] ~ N(0, std^2)`` for one training batch."""
  b, t = batch.inputs.shape[:2]
  return std * jax.random.normal(key, (b, t, spec.n_hidden), dtype)


def noisy_loss_and_grads(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  reg_l2: float,
  params: rnn.Params,
  rule_state: Any,
  batch: Batch,
  key: jax.Array,
  noise_key: jax.Array,
  noise: Noise,
  objective: Callable = loss_and_grads,
):
  """:func:`credit.training.objective.loss_and_grads` with the noise remedies.

  The data loss and the rule's gradient of (data loss + L2) are both taken at
  the perturbed weights and with the noisy forward pass; the caller applies
  the update to the unperturbed parameters.

  Args:
    rule, spec, task, reg_l2, params, rule_state, batch, key: as in
      ``loss_and_grads`` (``key`` is the rule's key).
    noise_key: key for the noise (independent of the batch and rule keys).
    noise: the standard deviations.
    objective: ``loss_and_grads``, or ``loss_grads_and_state`` to get the rule's
      updated state as well (learned at the perturbed weights and activity).

  Returns:
    What ``objective`` returns: ``(data loss, grads)`` by default.
  """
  k_weight, k_activity = jax.random.split(noise_key)
  at = params
  if noise.weight_std > 0:
    eps = weight_noise(k_weight, params, spec, noise.weight_std)
    at = jax.tree.map(jnp.add, params, eps)
  xi = None
  if noise.activity_std > 0:
    xi = activity_noise(k_activity, batch, spec, noise.activity_std, params["w_rec"].dtype)
  return objective(rule, spec, task, reg_l2, at, rule_state, batch, key, noise=xi)
