r"""Gradient alignment: the cosine between a rule's gradient and BPTT's.

For two gradient pytrees ``g`` (a rule) and ``r`` (the reference) and a group
``G`` of parameters,

.. math::

  \cos_G(g, r) = \frac{\sum_{k \in G} \langle g_k, r_k \rangle}
  {\sqrt{\sum_{k \in G} \|g_k\|^2} \sqrt{\sum_{k \in G} \|r_k\|^2}},

taken over the flattened leaves (0 when either norm is 0, as in vanilla-rtrl's
``compare_algorithms``). Groups: each parameter alone, ``recurrent``
(``w_rec``, ``w_in``, ``b``: where rules differ; readouts are exact for every
rule) and ``all`` (every parameter).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

RECURRENT = ("w_rec", "w_in", "b")


def _dot(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array], keys) -> jax.Array:
  return sum(jnp.vdot(a[k], b[k]) for k in keys)


def _cos(g, r, keys) -> jax.Array:
  gg, rr, gr = _dot(g, g, keys), _dot(r, r, keys), _dot(g, r, keys)
  denom = jnp.sqrt(gg) * jnp.sqrt(rr)
  return jnp.where(denom > 0, gr / jnp.where(denom > 0, denom, 1.0), 0.0)


def norm_ratio(g, r, keys) -> jax.Array:
  r""":math:`\|g_G\| / \|r_G\|` over the parameters ``keys`` (NaN when ``r`` is 0)."""
  gg, rr = _dot(g, g, keys), _dot(r, r, keys)
  return jnp.where(rr > 0, jnp.sqrt(gg / jnp.where(rr > 0, rr, 1.0)), jnp.nan)


def cosine_alignment(grads: Mapping[str, jax.Array], reference: Mapping[str, jax.Array]):
  """Cosine similarity per parameter group between two gradient pytrees (plain dicts).

  Args:
    grads: a rule's gradient, ``{name: array}``.
    reference: the reference gradient (BPTT), same structure.

  Returns:
    ``{name: cos}`` for each parameter, plus ``"recurrent"`` over the
    recurrent-side parameters present (``w_rec``, ``w_in``, ``b``) and ``"all"``
    over every parameter; scalars.
  """
  keys = sorted(reference)
  out = {k: _cos(grads, reference, (k,)) for k in keys}
  recurrent = [k for k in RECURRENT if k in reference]
  if recurrent:
    out["recurrent"] = _cos(grads, reference, recurrent)
  out["all"] = _cos(grads, reference, keys)
  return out
