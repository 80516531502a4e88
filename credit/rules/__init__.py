"""Learning rules: a registry of :class:`~credit.rules.base.GradientRule` factories.

``credit.rules.get(name)`` returns the factory ``(spec, options) -> GradientRule``;
``credit.rules.make(name, spec, options)`` builds the rule. Options shared by
all rules live in one ConfigDict (``config.rule_options``), see
:func:`default_options`.
"""

from __future__ import annotations

import ml_collections

from credit.models.rnn import RNNSpec
from credit.rules import bptt
from credit.rules.base import GradientRule, RuleFactory

_FACTORIES: dict[str, RuleFactory] = {
    "bptt": bptt.make,
}


def names() -> tuple[str, ...]:
  return tuple(sorted(_FACTORIES))


def get(name: str) -> RuleFactory:
  """The factory of a registered rule; an unknown name lists the registered ones."""
  if name not in _FACTORIES:
    raise ValueError(f"rule must be one of {names()}, got {name!r}")
  return _FACTORIES[name]


def default_options() -> ml_collections.ConfigDict:
  """Options read by the rules (each rule reads the ones it needs)."""
  return ml_collections.ConfigDict(dict())


def validate(name: str, options: ml_collections.ConfigDict) -> None:
  get(name)
  del options


def make(name: str, spec: RNNSpec, options: ml_collections.ConfigDict | None = None) -> GradientRule:
  return get(name)(spec, options if options is not None else default_options())


__all__ = ["GradientRule", "default_options", "get", "make", "names", "validate"]
