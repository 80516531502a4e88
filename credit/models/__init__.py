"""Network models: the leaky rate RNN (:mod:`credit.models.rnn`)."""

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

__all__ = [
  "ACTIVATIONS",
  "Params",
  "RNNSpec",
  "Trajectory",
  "activation_fns",
  "cell_types",
  "effective_w_rec",
  "forward",
  "init_params",
  "outputs",
  "presynaptic_sign",
  "project",
  "recurrent_mask",
  "step",
]
