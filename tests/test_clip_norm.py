"""Global-norm clipping of the update direction (``optimizer.clip_norm``) against its formula."""

from credit.training import optimizers
from credit.training.config import base_config

import jax.numpy as jnp
import numpy as np
import pytest


def _sgd_step(clip_norm: float, grads: dict) -> dict:
  opt_config = base_config().optimizer
  opt_config.name, opt_config.learning_rate, opt_config.clip_norm = "sgd", 0.1, clip_norm
  opt = optimizers.make_optimizer(opt_config)
  params = {k: jnp.zeros_like(v) for k, v in grads.items()}
  updates, _ = opt.update(grads, opt.init(params), params)
  return updates


def test_clipping_rescales_only_steps_above_the_norm(x64):
  grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[0.0, 4.0]])}  # global norm 5
  for clip, factor in ((0.0, 1.0), (10.0, 1.0), (2.5, 0.5)):
    updates = _sgd_step(clip, grads)
    for k in grads:
      np.testing.assert_allclose(updates[k], -0.1 * factor * grads[k], rtol=1e-14)


def test_negative_clip_norm_is_refused():
  opt_config = base_config().optimizer
  opt_config.clip_norm = -1.0
  with pytest.raises(ValueError, match="clip_norm"):
    optimizers.make_optimizer(opt_config)
