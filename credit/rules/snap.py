r"""SnAp-n (Menick et al. 2021): RTRL with the influence kept on its n-step sparsity pattern.

A parameter :math:`W_{ij}` (row ``i`` of ``W = [W_rec | W_in | b]``) first moves
:math:`h_i`, then, one step later, every unit :math:`h_k` with
:math:`W_{rec,ki} \ne 0`, and so on. SnAp-n keeps the influence entries
:math:`M_t[k, i, :]` that the parameter reaches within ``n`` steps, i.e. for
which the recurrent graph (edge :math:`i \to k` where :math:`W_{rec,ki} \ne 0`)
has a walk from ``i`` to ``k`` of at most ``n - 1`` hops, and drops the rest at
every step:

.. math::

  S^{(n)} = \mathbb 1\big[(I + |A|)^{n-1} > 0\big], \quad A_{ki} = \mathbb 1[W_{rec,ki} \ne 0],
  \qquad
  M_t = S^{(n)} \odot (J_t M_{t-1}) + \bar M_t,

with :math:`S^{(n)}` broadcast over the presynaptic index ``j``, from
:math:`M_0 = 0`, and :math:`g = \sum_t q_t^\top M_t`, :math:`q_t = W_{out}^\top e_t`
(:math:`J_t`, :math:`\bar M_t` as in :mod:`credit.rules.rtrl`; :math:`\bar M_t`
lies on ``k = i``, always kept).

* ``n = 1`` keeps ``k = i`` only: the trace
  :math:`M_t[i, i, :] = J_{t,ii} M_{t-1}[i, i, :] + D_{t,i} \hat a_t` with
  :math:`J_{t,ii} = (1-\alpha) + D_{t,i} W_{rec,ii}` is e-prop's with
  self-coupling (``eprop``, ``self_coupling=True``); use that rule, which costs
  :math:`O(N m)`, rather than ``snap`` with ``snap_order=1``.
* ``n - 1`` at least the longest shortest path of the graph keeps every entry
  that can be non-zero: SnAp-n is then RTRL. A dense ``W_rec`` has paths of
  one hop, so SnAp-2 is already exact RTRL there; SnAp-2 differs from RTRL
  when ``W_rec`` is sparse (e.g. synapses silenced by Dale's-law projection).

The pattern is read from the current non-zero entries of the masked ``W_rec``.
The influence is stored dense and masked, so the cost is RTRL's whatever the
sparsity (memory :math:`O(N^2 m)`, compute :math:`O(N^3 m)` per example and
step); a sparse layout would cost :math:`O(\mathrm{nnz}(S) m)` memory but needs a
pattern fixed before compilation. The rule refuses networks above
``rule_options.rtrl_max_params``, as RTRL does.

Registered as ``snap`` (``n = rule_options.snap_order``) and ``snap2`` (``n = 2``).
"""

from __future__ import annotations

from credit.models.rnn import Params, RNNSpec, Trajectory, effective_w_rec
from credit.rules import rtrl
from credit.rules.base import (
  GradientRule,
  no_state,
)

import jax
import jax.numpy as jnp
import ml_collections


def sparsity_pattern(w_rec: jax.Array, order: int) -> jax.Array:
  r"""The kept entries :math:`S^{(n)}[k, i]`: ``k`` reachable from ``i`` in at most ``n - 1`` hops.

  Args:
    w_rec: the masked recurrent matrix ``[N(post), N(pre)]``.
    order: ``n >= 1``.

  Returns:
    ``[N(k), N(i)]`` of 0/1 in ``w_rec``'s dtype.
  """
  adjacency = (w_rec != 0).astype(w_rec.dtype)
  reach = jnp.eye(w_rec.shape[0], dtype=w_rec.dtype)
  for _ in range(order - 1):
    reach = ((reach + adjacency @ reach) > 0).astype(w_rec.dtype)
  return reach


def snap_grads(
  params: Params, spec: RNNSpec, traj: Trajectory, errors: jax.Array, order: int
) -> Params:
  """The SnAp-``order`` gradient (the influence tensor masked at every step)."""
  keep = sparsity_pattern(effective_w_rec(params, spec), order)
  return rtrl.rtrl_grads(params, spec, traj, errors, keep)


def _make(name: str, spec: RNNSpec, options: ml_collections.ConfigDict, order: int):
  rtrl.check_size(spec, int(options.rtrl_max_params), rule=name)

  def grads(params, state, traj, errors, key):
    del state, key
    return snap_grads(params, spec, traj, errors, order)

  return GradientRule(name=name, init=no_state, grads=grads)


def make_snap(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _make("snap", spec, options, int(options.snap_order))


def make_snap2(spec: RNNSpec, options: ml_collections.ConfigDict) -> GradientRule:
  return _make("snap2", spec, options, 2)
