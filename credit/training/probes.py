"""Measurements taken at every evaluation, as the config asks for them.

A probe is ``probe(params, rule_state, key) -> {metric name: scalar}``; it is
compiled into the training program and vmapped over seeds with it.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from credit.models.rnn import RNNSpec
from credit.rules.base import GradientRule
from credit.tasks.base import Task


def make_probes(
    config: ml_collections.ConfigDict,
    spec: RNNSpec,
    task: Task,
    rule: GradientRule,
    total_loss: Callable,
) -> tuple:
  """The probes enabled in ``config`` (none by default)."""
  del config, spec, task, rule, total_loss
  return ()
