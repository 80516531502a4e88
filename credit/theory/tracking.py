r"""The stability theory measured inside the compiled, seed-vmapped training program.

At every evaluation whose step is a multiple of ``config.theory.every``, on the
first ``config.theory.batch_size`` validation examples (a fixed batch, as for
curvature), over the parameters ``config.theory.params`` (``"w_rec"``, with
the others held fixed, or ``"all"``; masked synapses excluded as in
:mod:`credit.curvature.tracking`), the probe measures:

* ``theory_lambda_max`` (and ``theory_lambda_<i>`` for ``i <= top_k``): the top
  Hessian eigenvalues of the exact loss by ``lanczos_steps`` Lanczos steps
  (the same quantity as the curvature probe's ``lambda_max``; its Ritz vectors
  are needed here). When the curvature probe runs over the same parameters,
  batch size and Lanczos steps (:func:`shares_lanczos`), the two are one probe
  (:func:`make_curvature_and_theory_probe`) and, at evaluations where both are
  due, this is the curvature probe's Lanczos run (its start vector, so
  ``theory_lambda_max == lambda_max`` there), with its gradient and HVP:
  ``lanczos_steps`` HVPs and a gradient pass fewer per such evaluation;
* ``theory_c`` (``theory_c_<i>``): the rule's alignment factor
  :math:`c = v^\top J v / v^\top H v` along each top eigenvector :math:`v`
  (:func:`~credit.theory.stability.alignment_factor`; 1 for exact rules);
* ``theory_eta``: the learning rate of the next update (remedies included);
* ``predicted_lambda_bound``: :math:`2/(\eta c)` (:math:`+\infty` when
  :math:`c \le 0`), the sharpness above which the top direction is unstable;
* ``theory_stability_ratio``: :math:`\eta c \lambda_{max} / 2` (> 1: beyond the
  predicted edge);
* ``update_map_radius``, ``update_map_min_real``: spectral radius and smallest
  real part of the Ritz values of :math:`I - \eta J_{rule}` (``arnoldi_steps``
  Arnoldi steps), and ``rule_jac_max_real``: the largest real part of
  :math:`J_{rule}`'s Ritz values (compare with :math:`c\lambda_{max}` and
  :math:`2/\eta`);
* ``theory_align_cos``: cosine between the rule's descent direction and BPTT's
  over the measured parameters (the ``alignment`` probe's ``align_cos`` is over
  all parameters).

The map :math:`I - \eta J` is that of plain SGD; with momentum or Adam the
update map differs, and these metrics describe the SGD step at the same
:math:`\eta`. Under Dale's law the sign projection after each step is not
linear and is ignored. Other evaluations return NaN; ``step`` is not vmapped,
so the ``lax.cond`` skips the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from credit.curvature.hvp import make_grad, select
from credit.curvature.lanczos import lanczos_top_k
from credit.curvature.tracking import (
  CurvatureMeasurement,
  check_opt_state,
  free_coordinates_note,
  free_dimension,
  make_curvature_measurement,
  measured_subset,
  parameter_mask,
  random_start,
  skip_metrics,
)
from credit.curvature.tracking import metric_names as curvature_metric_names
from credit.models import rnn
from credit.rules.alignment import cosine_alignment
from credit.rules.base import GradientRule
from credit.tasks.base import Batch, Task, validation_batch
from credit.theory.stability import alignment_factor, predicted_bound, update_map_spectrum
from credit.theory.update_map import linearize_rule
from credit.training import optimizers

import jax
import jax.numpy as jnp
import ml_collections
from jax.flatten_util import ravel_pytree

Metrics = dict[str, jax.Array]


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Names of the metrics the theory probe reports for this config."""
  k = config.theory.top_k
  names = ["theory_lambda_max", "theory_c"]
  for i in range(2, k + 1):
    names += [f"theory_lambda_{i}", f"theory_c_{i}"]
  names += [
    "theory_eta",
    "predicted_lambda_bound",
    "theory_stability_ratio",
    "update_map_radius",
    "update_map_min_real",
    "rule_jac_max_real",
    "theory_align_cos",
  ]
  return tuple(names)


def theory_batch(task: Task, batch_size: int) -> Batch:
  """The first ``batch_size`` validation examples (fixed across the run)."""
  return validation_batch(task, batch_size, "theory.batch_size")


def check_sizes(config: ml_collections.ConfigDict, spec: rnn.RNNSpec) -> None:
  """Refuses Krylov sizes beyond the free coordinates, before anything compiles."""
  t = config.theory
  subset = measured_subset(t.params)
  dim = free_dimension(spec, subset)
  if not 1 <= t.top_k <= t.lanczos_steps <= dim or not 1 <= t.arnoldi_steps <= dim:
    raise ValueError(
      f"need 1 <= theory.top_k ({t.top_k}) <= theory.lanczos_steps ({t.lanczos_steps}) "
      f"<= {dim} and 1 <= theory.arnoldi_steps ({t.arnoldi_steps}) <= {dim}, the "
      f"{free_coordinates_note(spec, subset)}"
    )


def make_theory_measurement(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec,
  task: Task,
  rule: GradientRule,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
) -> Callable[..., Metrics]:
  """Builds ``measure(params, rule_state, key, step, shared=None) -> metrics`` (unconditional).

  ``shared``: a :class:`~credit.curvature.tracking.CurvatureMeasurement` at the
  same parameters, on the same batch and subset, with Ritz vectors: its
  gradient, HVP and Lanczos run are used instead of the probe's own (which
  would repeat ``lanczos_steps`` HVPs and a gradient pass). Its start vector is
  the curvature probe's, so ``theory_lambda_max`` equals ``lambda_max`` there.
  """
  t = config.theory
  check_sizes(config, spec)
  batch = theory_batch(task, t.batch_size)
  subset = measured_subset(t.params)
  names = metric_names(config)
  eta_at = optimizers.learning_rate_at(config)
  reg_l2 = config.reg_l2

  def measure(
    params: rnn.Params,
    rule_state: Any,
    key: jax.Array,
    step: jax.Array,
    shared: CurvatureMeasurement | None = None,
  ) -> Metrics:
    k_lanczos, k_arnoldi, k_rule = jax.random.split(key, 3)
    fixed = jax.lax.optimization_barrier(batch)  # no constant folding of the batch
    mask = parameter_mask(params, spec, subset)
    point = select(params, subset)
    apply = (lambda x: x) if mask is None else (lambda x: jax.tree.map(jnp.multiply, mask, x))
    if shared is None:
      # Linearized once: every product below costs a tangent pass only. The exact
      # gradient (BPTT's descent direction, for the cosine) comes with the HVP.
      g_ref, hvp_linear = jax.linearize(make_grad(total_loss, params, fixed, subset), point)
      hvp = lambda v: apply(hvp_linear(apply(v)))
      v0 = random_start(k_lanczos, point, mask)
      tol = float(t.get("lanczos_tol", 0.0))
      top = lanczos_top_k(
        hvp, v0, t.lanczos_steps, t.top_k, return_vectors=True, mask=mask, tol=tol
      )
    else:
      g_ref, hvp, top = shared.gradient, shared.hvp, shared.top
    g_rule, jvp = linearize_rule(
      rule, spec, task, reg_l2, params, rule_state, fixed, k_rule, subset, mask, method=t.jvp
    )
    dtype = params["w_rec"].dtype
    eta = jnp.asarray(eta_at(step), dtype)
    out = {}
    for i in range(t.top_k):
      v = jax.tree.map(lambda x, i=i: x[i], top.eigenvectors)
      suffix = "max" if i == 0 else str(i + 1)
      out[f"theory_lambda_{suffix}"] = top.eigenvalues[i]
      out["theory_c" if i == 0 else f"theory_c_{i + 1}"] = alignment_factor(jvp, hvp, v)
    c = out["theory_c"]
    out["theory_eta"] = eta
    out["predicted_lambda_bound"] = predicted_bound(eta, c)
    out["theory_stability_ratio"] = eta * c * out["theory_lambda_max"] / 2.0
    v0 = random_start(k_arnoldi, point, mask)
    spectrum = update_map_spectrum(jvp, v0, eta, t.arnoldi_steps, mask=mask)
    out["update_map_radius"] = spectrum.radius
    out["update_map_min_real"] = spectrum.min_real
    out["rule_jac_max_real"] = spectrum.max_real_rule
    flat = {"g": ravel_pytree(g_rule)[0]}
    ref = {"g": ravel_pytree(apply(g_ref))[0]}
    out["theory_align_cos"] = cosine_alignment(flat, ref)["g"]
    return {k: jnp.asarray(out[k], dtype) for k in names}

  return measure


def make_theory_probe(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec,
  task: Task,
  rule: GradientRule,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
) -> Callable[..., Metrics]:
  """Builds ``probe(params, rule_state, key, step, opt_state=None) -> metrics`` (module docstring).

  Args:
    config: run config with a ``theory`` block (``every > 0``).
    spec: the network spec.
    task: the task (its ``eval_sets["val"]`` gives the fixed batch).
    rule: the rule being trained.
    total_loss: the exact objective ``(params, batch) -> scalar``.

  Returns:
    The probe. Sizes are checked here, before anything compiles.
  """
  t = config.theory
  if t.every <= 0:
    raise ValueError(f"theory.every must be > 0 for a theory probe, got {t.every}")
  measure = make_theory_measurement(config, spec, task, rule, total_loss)
  skip = skip_metrics(metric_names(config))
  every = int(t.every)

  def probe(
    params: rnn.Params, rule_state: Any, key: jax.Array, step: jax.Array, opt_state: Any = None
  ) -> Metrics:
    del opt_state
    return jax.lax.cond(step % every == 0, measure, skip, params, rule_state, key, step)

  return probe


def shares_lanczos(config: ml_collections.ConfigDict) -> bool:
  """Whether the curvature and theory probes are both on and measure the same Lanczos run.

  They do when both use the same parameters, batch size, Lanczos steps and tolerance
  (:func:`credit.reproduction.plan.with_theory` sets them so) and the curvature
  HVP is over the whole batch or chunks of it (the same operator either way).
  """
  if "theory" not in config or config.theory.every <= 0 or config.curvature.every <= 0:
    return False
  c, t = config.curvature, config.theory
  ours = (c.params, c.batch_size, c.lanczos_steps, c.get("lanczos_tol", 0.0))
  theirs = (t.params, t.batch_size, t.lanczos_steps, t.get("lanczos_tol", 0.0))
  return ours == theirs


def make_curvature_and_theory_probe(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec,
  task: Task,
  rule: GradientRule,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
) -> Callable[..., Metrics]:
  """The curvature and theory probes as one, sharing a Lanczos run where both are due.

  At an evaluation where both run (``step`` a multiple of both ``every``), one
  Lanczos run on the Hessian gives ``lambda_max`` .. and, with its Ritz
  vectors, the theory probe's eigenpairs; the gradient and the HVP's
  linearization are shared too. Elsewhere each runs alone as its own probe
  would (``lax.switch`` on the unbatched step: skipped work is not paid for).
  The curvature part uses ``key`` itself (as the curvature probe given that
  key), the theory part ``fold_in(key, 1)``.

  Args:
    config: a run config for which :func:`shares_lanczos` holds.
    spec, task, rule, total_loss: as :func:`make_theory_probe`.

  Returns:
    ``probe(params, rule_state, key, step, opt_state=None) -> metrics``: the
    metrics of both probes.
  """
  if not shares_lanczos(config):
    raise ValueError(
      "the curvature and theory probes share a Lanczos run only when both are on with "
      "equal params, batch_size, lanczos_steps and lanczos_tol"
    )
  c, t = config.curvature, config.theory
  theory = make_theory_measurement(config, spec, task, rule, total_loss)
  c_names, t_names = curvature_metric_names(config), metric_names(config)
  c_skip, t_skip = skip_metrics(c_names), skip_metrics(t_names)
  c_every, t_every = int(c.every), int(t.every)
  wide = config.copy_and_resolve_references()
  # The Lanczos run keeps the Ritz pairs both parts need; the curvature part reports its own.
  wide.curvature.top_k = max(c.top_k, t.top_k)
  curvature = make_curvature_measurement(wide, spec, task, total_loss, ritz_vectors=True)
  c_keep = set(c_names)

  def curvature_only(params, rule_state, opt_state, key, step):
    m = curvature(params, opt_state, key).metrics
    return {k: v for k, v in m.items() if k in c_keep} | t_skip(params)

  def theory_only(params, rule_state, opt_state, key, step):
    return c_skip(params) | theory(params, rule_state, jax.random.fold_in(key, 1), step)

  def both(params, rule_state, opt_state, key, step):
    shared = curvature(params, opt_state, key)
    m = {k: v for k, v in shared.metrics.items() if k in c_keep}
    return m | theory(params, rule_state, jax.random.fold_in(key, 1), step, shared)

  def neither(params, rule_state, opt_state, key, step):
    return c_skip(params) | t_skip(params)

  def probe(
    params: rnn.Params, rule_state: Any, key: jax.Array, step: jax.Array, opt_state: Any = None
  ) -> Metrics:
    opt_state = check_opt_state(config, opt_state)
    index = (step % c_every == 0).astype(jnp.int32) + 2 * (step % t_every == 0).astype(jnp.int32)
    branches = (neither, curvature_only, theory_only, both)
    return jax.lax.switch(index, branches, params, rule_state, opt_state, key, step)

  return probe
