"""The curvature and theory probes sharing one Lanczos run measure what they measure apart."""

from credit import rules
from credit.curvature.tracking import make_curvature_probe
from credit.theory.tracking import (
  make_curvature_and_theory_probe,
  make_theory_probe,
  shares_lanczos,
)
from credit.training.config import base_config
from credit.training.objective import make_total_loss
from credit.training.probes import make_probes

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_theory import tiny_problem


def test_shared_lanczos_equals_separate_probes(x64):
  spec, params, batch, task = tiny_problem(jax.random.key(0))  # 20 free synapses
  task = task._replace(eval_sets={"val": batch})
  rule = rules.make("eprop", spec)  # truncated: c != 1, J != H
  total = make_total_loss(spec, task, 1e-2)
  config = base_config()
  config.optimizer.update(name="adam")  # lambda_max_precond rides along
  config.reg_l2 = 1e-2
  # 20 Lanczos steps = all free synapses: both runs exact, whatever their start vectors.
  config.curvature.update(every=2, batch_size=4, lanczos_steps=20, top_k=2)
  config.theory.update(every=3, batch_size=4, lanczos_steps=20, top_k=2, arnoldi_steps=8)
  config.theory.jvp = "jvp"
  assert shares_lanczos(config)
  probes = make_probes(config, spec, task, rule, total)
  assert len(probes) == 1  # one combined probe
  combined = make_curvature_and_theory_probe(config, spec, task, rule, total)
  curvature = make_curvature_probe(config, spec, task, total)
  theory = make_theory_probe(config, spec, task, rule, total)
  # A few Adam steps so that its preconditioner is defined.
  from credit.training.optimizers import make_optimizer

  opt = make_optimizer(config.optimizer)
  opt_state = opt.init(params)
  for _ in range(2):
    updates, opt_state = opt.update(jax.grad(total)(params, batch), opt_state, params)
  key = jax.random.key(4)

  @jax.jit
  def run(step):
    apart = curvature(params, None, key, step, opt_state) | theory(
      params, None, jax.random.fold_in(key, 1), step
    )
    return combined(params, None, key, step, opt_state), apart

  for step in (6, 2, 3, 1):  # both due, curvature only, theory only, neither
    together, apart = run(jnp.asarray(step, jnp.int32))
    assert set(together) == set(apart)
    for name, value in apart.items():
      if np.isnan(value):
        assert np.isnan(together[name]), (step, name)
      else:
        np.testing.assert_allclose(together[name], value, rtol=1e-9, err_msg=f"{step} {name}")
    due = {k for k, v in apart.items() if not np.isnan(v)}
    assert ("lambda_max" in due) == (step % 2 == 0) and ("theory_c" in due) == (step % 3 == 0)
  # Sharing: the theory probe's eigenvalue is the curvature probe's own Ritz value.
  together, _ = run(jnp.asarray(6, jnp.int32))
  assert together["theory_lambda_max"] == together["lambda_max"]
  config.theory.lanczos_steps = 10
  assert not shares_lanczos(config) and len(make_probes(config, spec, task, rule, total)) == 2
  with pytest.raises(ValueError, match="share a Lanczos run"):
    make_curvature_and_theory_probe(config, spec, task, rule, total)
