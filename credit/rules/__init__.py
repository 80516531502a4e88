"""Learning rules: a registry of :class:`~credit.rules.base.GradientRule` factories.

``credit.rules.get(name)`` returns the factory ``(spec, options) -> GradientRule``;
``credit.rules.make(name, spec, options)`` builds the rule. Options shared by
all rules live in one ConfigDict (``config.rule_options``), see
:func:`default_options`.

Registered rules (rate RNN):

* ``bptt``: exact backpropagation through time (the reference).
* ``tbptt``: BPTT truncated to a sliding window of ``truncation`` steps.
* ``rtrl``: exact real-time recurrent learning (full influence tensor).
* ``eprop``: e-prop, symmetric feedback, trace with leak and self-coupling.
* ``eprop_random``: e-prop with a fixed random feedback matrix.
* ``rflo``: random feedback, leak-only trace (Murray 2019).
* ``mdgl``: e-prop plus the cell-type-averaged one-hop modulatory term.
* ``mdgl_exact``: the same with the cell-specific ``W_rec`` (two-step truncation).
* ``three_factor_autodiff``: the reference code's stop-gradient rule (an oracle).
* ``uoro``: UORO, an unbiased rank-one estimate of the influence tensor.
* ``kf_rtrl``, ``r_kf_rtrl``: unbiased Kronecker-factored influence estimates.
* ``snap``, ``snap2``: SnAp-n (RTRL kept on the n-step sparsity pattern), ``n =
  snap_order`` or 2.
* ``modprop``: BPTT through surrogate backward dynamics (type-averaged weights,
  constant derivative on the recurrent path).
* ``kernl``: eligibility traces with learned per-neuron kernels and sensitivities.
* ``dni``: a learned linear synthetic gradient for the credit, bootstrapped.

Rules with a learned state (``kernl``, ``dni``) update it after every training
batch (:attr:`~credit.rules.base.GradientRule.update_state`).

Spiking networks (a :class:`~credit.models.lif.LIFSpec`, ``config.model.kind =
"lif"``) get the rules of the same names from :mod:`credit.rules.spiking`
(:func:`names_for`): ``make`` picks the registry from the spec.
"""

from __future__ import annotations

from credit.models.lif import LIFSpec
from credit.models.rnn import RNNSpec
from credit.rules import (
  bptt,
  dni,
  eprop,
  kernl,
  kf_rtrl,
  mdgl,
  modprop,
  rtrl,
  snap,
  spiking,
  tbptt,
  three_factor,
  uoro,
)
from credit.rules.base import GradientRule, RuleFactory

import ml_collections

_FACTORIES: dict[str, RuleFactory] = {
  "bptt": bptt.make,
  "tbptt": tbptt.make,
  "rtrl": rtrl.make,
  "eprop": eprop.make_eprop,
  "eprop_random": eprop.make_eprop_random,
  "rflo": eprop.make_rflo,
  "mdgl": mdgl.make_mdgl,
  "mdgl_exact": mdgl.make_mdgl_exact,
  "three_factor_autodiff": three_factor.make,
  "uoro": uoro.make,
  "kf_rtrl": kf_rtrl.make_kf_rtrl,
  "r_kf_rtrl": kf_rtrl.make_r_kf_rtrl,
  "snap": snap.make_snap,
  "snap2": snap.make_snap2,
  "modprop": modprop.make,
  "kernl": kernl.make,
  "dni": dni.make,
}

# Rules that have both an online and an offline implementation (``online``).
ONLINE_RULES = ("eprop", "eprop_random", "rflo", "mdgl", "mdgl_exact", "kernl")
# Rules whose state holds a random feedback matrix ``{"feedback": B [N, N_out]}``.
RANDOM_FEEDBACK_RULES = ("eprop_random", "rflo")
# Rules whose gradient is a random (unbiased) estimate drawn from ``key``.
STOCHASTIC_RULES = ("uoro", "kf_rtrl", "r_kf_rtrl")


def names() -> tuple[str, ...]:
  return tuple(sorted(_FACTORIES))


def names_for(kind: str) -> tuple[str, ...]:
  """The rules that exist for ``config.model.kind = kind`` (``"rate"`` or ``"lif"``)."""
  return spiking.names() if kind == "lif" else names()


def get(name: str) -> RuleFactory:
  """The factory of a registered rule; an unknown name lists the registered ones."""
  if name not in _FACTORIES:
    raise ValueError(f"rule must be one of {names()}, got {name!r}")
  return _FACTORIES[name]


def default_options() -> ml_collections.ConfigDict:
  """Options read by the rules (each rule reads the ones it needs).

  Fields:
    truncation: ``tbptt`` window ``K`` (steps each loss is backpropagated).
    feedback_scale: ``eprop_random``, ``rflo``: ``B_ij ~ N(0, feedback_scale^2 / N)``.
    online: e-prop family (``eprop``, ``eprop_random``, ``rflo``, ``mdgl``,
      ``mdgl_exact``, ``kernl``): True carries the traces forward in time; False (default)
      uses the equivalent, faster backward filter and contracts only the steps
      that carry credit (the same gradient while weights change once per batch).
    self_coupling: ``eprop``, ``eprop_random``, ``mdgl``, ``mdgl_exact``: keep the
      self-coupling ``D_i W_rec,ii`` in the trace decay (with ``no_autapse`` the
      diagonal is zero and this changes nothing); ``rflo`` is always leak-only.
    rtrl_max_params: ``rtrl``, ``snap`` and ``snap2`` refuse networks with more
      recurrent-side parameters ``P = N (N + N_in + 1)`` (the influence tensor has
      ``N P`` entries per example).
    snap_order: ``snap``: the order ``n >= 1`` of SnAp-n (influence entries kept
      where a parameter reaches a unit within ``n`` steps; ``snap2`` is ``n = 2``).
    modulatory_synapses: ``mdgl`` and ``modprop``'s cell-type-averaged weights:
      ``"existing"`` (default, the MDGL reference code) sums over existing
      synapses (``W_rec != 0``) and averages their weights; ``"all"`` uses the
      same means on every ``k != p``, silent synapses included; ``"dense"``
      averages over all entries, zeros included, on every ``k != p`` (the ModProp
      reference code). See :mod:`credit.rules.mdgl`.
    modprop_mu: ``modprop``'s constant derivative on the recurrent path (the
      reference's 0.25).
    kernl_learning_rate: ``kernl``: Adam learning rate of the kernels and
      sensitivities, one step per training batch.
    dni_learning_rate: ``dni``: SGD learning rate of the synthetic-gradient
      module, one step per training batch (Adam's per-entry normalization moves
      the module's many near-zero weights as fast as the others and, on
      seq-MNIST, drove the network unstable).
  """
  return ml_collections.ConfigDict(
    dict(
      truncation=10,
      feedback_scale=1.0,
      online=False,
      self_coupling=True,
      rtrl_max_params=65_536,
      snap_order=2,
      modulatory_synapses="existing",
      modprop_mu=0.25,
      kernl_learning_rate=1e-3,
      dni_learning_rate=0.1,
    )
  )


def _check(cond: bool, field: str, allowed: str, value) -> None:
  if not cond:
    raise ValueError(f"rule_options.{field} must be {allowed}, got {value!r}")


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(name: str, options: ml_collections.ConfigDict, kind: str = "rate") -> None:
  """Checks the rule name (for models of ``kind``) and every rule option (all of them,
  whichever rule is chosen)."""
  if kind == "lif":
    if name not in spiking.names():
      raise ValueError(
        f"rule {name!r} has no spiking form (model.kind='lif'); the spiking rules are "
        f"{spiking.names()}"
      )
  else:
    get(name)
  known = set(default_options().keys())
  unknown = sorted(set(options.keys()) - known)
  if unknown:
    raise ValueError(f"rule_options has unknown field(s) {unknown}; known: {sorted(known)}")
  o = _complete(options)
  _check(
    _is_int(o.truncation) and o.truncation >= 1, "truncation", "a positive integer", o.truncation
  )
  _check(
    isinstance(o.feedback_scale, (int, float))
    and not isinstance(o.feedback_scale, bool)
    and o.feedback_scale > 0,
    "feedback_scale",
    "a number > 0",
    o.feedback_scale,
  )
  _check(isinstance(o.online, bool), "online", "True or False", o.online)
  _check(isinstance(o.self_coupling, bool), "self_coupling", "True or False", o.self_coupling)
  _check(
    _is_int(o.rtrl_max_params) and o.rtrl_max_params >= 1,
    "rtrl_max_params",
    "a positive integer",
    o.rtrl_max_params,
  )
  _check(
    _is_int(o.snap_order) and o.snap_order >= 1, "snap_order", "a positive integer", o.snap_order
  )
  _check(
    o.modulatory_synapses in mdgl.SYNAPSES,
    "modulatory_synapses",
    f"one of {mdgl.SYNAPSES}",
    o.modulatory_synapses,
  )
  _check(_is_number(o.modprop_mu), "modprop_mu", "a number", o.modprop_mu)
  for field in ("kernl_learning_rate", "dni_learning_rate"):
    _check(_is_number(o[field]) and o[field] > 0, field, "a number > 0", o[field])


# Rules that keep the full (or SnAp-masked) influence tensor: size-guarded by rtrl_max_params.
INFLUENCE_RULES = ("rtrl", "snap", "snap2")


def check_network(name: str, spec: RNNSpec | LIFSpec, options: ml_collections.ConfigDict) -> None:
  """The checks of rule ``name`` that need the network (``make`` runs them too).

  Config validation calls this with the spec of the task's shape, before any data
  exist, so that what ``make`` would refuse is a config error found up front.

  Raises:
    ValueError: an influence-tensor rule on a network above ``rtrl_max_params``; an
      online spiking MDGL with a leaky readout (``kappa > 0``).
  """
  o = _complete(options)
  if isinstance(spec, LIFSpec):
    if name in ("mdgl", "mdgl_exact") and o.online and spec.kappa != 0.0:
      raise ValueError(
        f"rule {name!r} with rule_options.online=True needs model.kappa = 0 (the modulatory "
        f"signal of a leaky readout depends on later errors), got model.kappa={spec.kappa}; "
        "set --config.model.kappa=0.0, or --config.rule_options.online=False (the offline "
        "form has no such limit)"
      )
    return
  if name in INFLUENCE_RULES:
    rtrl.check_size(spec, int(o.rtrl_max_params), rule=name)


def _complete(options: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
  """The defaults, overridden by the given options (which may name only some fields)."""
  merged = dict(default_options().items())
  if options is not None:
    merged.update(options.items())
  return ml_collections.ConfigDict(merged)


def make(
  name: str,
  spec: RNNSpec | LIFSpec,
  options: ml_collections.ConfigDict | None = None,
  loss_steps: tuple[int, ...] | None = None,
) -> GradientRule:
  """Builds rule ``name`` for ``spec``; missing options take their defaults.

  A :class:`~credit.models.lif.LIFSpec` gets the spiking rule of that name
  (:func:`credit.rules.spiking.make`); an unknown one lists the spiking rules.

  Args:
    name: a registered rule.
    spec: the network (rate or spiking).
    options: ``rule_options`` (see :func:`default_options`).
    loss_steps: the task's static loss steps (``Task.loss_steps``), when it has
      them: the offline e-prop family then picks its credited steps when the
      program is built (the same gradient, without run-time gathers).
  """
  full = _complete(options)
  spiking_network = isinstance(spec, LIFSpec)
  validate(name, full, "lif" if spiking_network else "rate")
  full.loss_steps = None if loss_steps is None else tuple(int(s) for s in loss_steps)
  if spiking_network:
    return spiking.make(name, spec, full)
  return get(name)(spec, full)


__all__ = [
  "ONLINE_RULES",
  "RANDOM_FEEDBACK_RULES",
  "STOCHASTIC_RULES",
  "GradientRule",
  "default_options",
  "get",
  "make",
  "names",
  "names_for",
  "validate",
]
