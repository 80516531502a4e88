"""Network models: the leaky rate RNN (:mod:`credit.models.rnn`) and LIF/ALIF spiking
networks (:mod:`credit.models.lif`).

Both modules share one interface over the same params pytree (``init_params``,
``project``, ``forward``, ``outputs``, ``outputs_in_chunks``, ``effective_w_rec``);
:func:`network` picks the module of a spec, so that training, objectives and probes
need no case per model.
"""

from types import ModuleType

from credit.models import lif, rnn
from credit.models.lif import LIFSpec
from credit.models.rnn import (
  ACTIVATIONS,
  Params,
  RNNSpec,
  Trajectory,
  activation_fns,
  cell_types,
  effective_w_rec,
  forward,
  init_params,
  outputs,
  presynaptic_sign,
  project,
  recurrent_mask,
  step,
)

KINDS = ("rate", "lif")


def network(spec: RNNSpec | LIFSpec) -> ModuleType:
  """The model module of ``spec``: :mod:`~credit.models.lif` for a :class:`LIFSpec`, else
  :mod:`~credit.models.rnn`."""
  return lif if isinstance(spec, LIFSpec) else rnn


def kind_of(spec: RNNSpec | LIFSpec) -> str:
  """``"lif"`` or ``"rate"`` (the ``config.model.kind`` of ``spec``)."""
  return "lif" if isinstance(spec, LIFSpec) else "rate"


__all__ = [
  "ACTIVATIONS",
  "KINDS",
  "LIFSpec",
  "Params",
  "RNNSpec",
  "Trajectory",
  "activation_fns",
  "cell_types",
  "effective_w_rec",
  "forward",
  "init_params",
  "kind_of",
  "network",
  "outputs",
  "presynaptic_sign",
  "project",
  "recurrent_mask",
  "step",
]
