r"""Curvature measured inside the compiled, seed-vmapped training program.

At every evaluation whose step is a multiple of ``config.curvature.every`` the
probe measures, on the first ``config.curvature.batch_size`` validation
examples (a fixed batch, as the reference code) and for the exact objective
``total_loss`` (data loss + L2, never a rule's approximate gradient):

* ``lambda_max``, ``lambda_2`` .. ``lambda_k``: the top ``top_k`` signed
  eigenvalues of the Hessian w.r.t. ``curvature.params`` (``"w_rec"`` as the
  reference, or ``"all"``), by ``lanczos_steps`` Lanczos steps from a Gaussian
  start vector drawn from the probe key (with ``lanczos_tol > 0``: until the
  ``top_k`` residual bounds are within ``lanczos_tol`` of ``|lambda_max|``, at most
  ``lanczos_steps`` steps; ``lanczos_steps_taken`` reports how many). On trained
  seq-MNIST networks 10 steps
  match the reference power iteration (18-60 HVPs) to float32 round-off, and 8
  to 4e-4 (``benchmarks/curvature.py``); ``lambda_2`` .. need more steps than
  ``lambda_max`` to converge;
* ``hessian_trace`` (``trace_probes > 0``): Hutchinson estimate of the trace
  of the same Hessian;
* ``relative_flatness`` (``flatness_probes > 0``): Hutchinson estimate of the
  relative flatness of ``W_rec`` (:mod:`credit.curvature.flatness`);
* ``lambda_max_precond`` (adaptive optimizers only: ``adam``, ``adamw``,
  ``rmsprop``): the preconditioned sharpness :math:`\lambda_{max}(P^{-1}H)` of
  the same Hessian, with the optimizer's diagonal preconditioner :math:`P`
  (:func:`credit.training.optimizers.preconditioner`, from the optimizer state
  at this evaluation), as the top eigenvalue of the symmetric
  :math:`P^{-1/2} H P^{-1/2}` (similar to :math:`P^{-1}H`) by the same number of
  Lanczos steps, over the coordinates the update moves (under Dale's law the
  silent synapses, held at zero by the projection, are left out:
  :func:`without_silent_synapses`). Compare with
  :func:`~credit.training.optimizers.stability_threshold` (Adam:
  :math:`(2 + 2\beta_1)/((1 - \beta_1)\eta)`, Cohen et al. 2022). NaN before
  Adam's first update; absent from ``sgd`` and ``momentum`` runs.

Masked synapses. With ``model.no_autapse`` the diagonal of ``W_rec`` does not
enter the dynamics; only its L2 term does. The Hessian is restricted to the
free synapses (:math:`PHP` with the synapse mask :math:`P`, see
:func:`~credit.curvature.hvp.make_hvp`), so those coordinates contribute 0,
as in the reference (where masked entries have zero gradient), instead of a
constant ``N * reg_l2`` to the trace.

Spiking networks (a :class:`~credit.models.lif.LIFSpec`). A spiking loss is
piecewise constant, so the probe measures one of the two definitions of
:mod:`credit.curvature.spiking`, chosen by ``curvature.spiking_definition``,
instead of ``total_loss``'s Hessian:

* ``"smoothed"``: the Hessian of the smoothed proxy (``H`` replaced by
  :math:`\sigma(x / \tau)`, ``tau = curvature.temperature``) at the same
  weights; symmetric, Lanczos as for the rate network; every metric above.
* ``"surrogate"``: the Jacobian :math:`A` of the surrogate-gradient map with
  spikes frozen (what training follows; not symmetric). ``lambda_max`` ..
  ``lambda_k``, ``hessian_trace`` and ``relative_flatness`` are those of its
  symmetric part :math:`(A + A^\top)/2` (Lanczos; the trace equals
  :math:`\mathrm{tr} A`), and ``jacobian_max_real`` is the largest real part of an
  eigenvalue of :math:`A` (``lanczos_steps`` Arnoldi steps,
  :mod:`credit.curvature.krylov`).

With ``"smoothed"`` and ``curvature.also_surrogate`` the probe measures both:
``lambda_max`` .. of the smoothed proxy, and ``surrogate_lambda_max`` (the
symmetric part's top eigenvalue) and ``jacobian_max_real`` of the surrogate
Jacobian at the same point, batch and start vector (as ``"surrogate"`` would).

Other evaluations return NaN. ``step`` is not vmapped over seeds, so the
``lax.cond`` stays a real branch and skipped evaluations cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.curvature import spiking
from credit.curvature.flatness import relative_flatness
from credit.curvature.hvp import make_gradient_and_hvp, make_hvp, select
from credit.curvature.lanczos import TopK, lanczos_top_k
from credit.curvature.trace import hutchinson_trace
from credit.models import lif, rnn
from credit.tasks.base import Batch, Task, validation_batch
from credit.training import optimizers

import jax
import jax.numpy as jnp
import ml_collections
from jax.flatten_util import ravel_pytree

Metrics = dict[str, jax.Array]


def metric_names(
  config: ml_collections.ConfigDict, spec: rnn.RNNSpec | lif.LIFSpec | None = None
) -> tuple[str, ...]:
  """Names of the metrics the probe reports for this config (and network ``spec``; without
  it, the network of ``config.model.kind``)."""
  c = config.curvature
  names = ["lambda_max"] + [f"lambda_{i}" for i in range(2, c.top_k + 1)]
  if c.trace_probes > 0:
    names.append("hessian_trace")
  if c.flatness_probes > 0:
    names.append("relative_flatness")
  if spiking_definition(config, spec) == "surrogate":
    names.append("jacobian_max_real")
  if also_surrogate(config, spec):
    names += ["surrogate_lambda_max", "jacobian_max_real"]
  if measures_preconditioned(config):
    names.append("lambda_max_precond")
  if c.get("lanczos_tol", 0.0) > 0:
    names.append("lanczos_steps_taken")
  return tuple(names)


def spiking_definition(
  config: ml_collections.ConfigDict, spec: rnn.RNNSpec | lif.LIFSpec | None = None
) -> str | None:
  """The curvature definition of a spiking network (``None`` for a rate network)."""
  if spec is not None:
    is_spiking = isinstance(spec, lif.LIFSpec)
  else:
    is_spiking = "model" in config and config.model.get("kind", "rate") == "lif"
  if not is_spiking:
    return None
  definition = config.curvature.get("spiking_definition", "smoothed")
  if definition not in spiking.SPIKING_DEFINITIONS:
    raise ValueError(
      f"curvature.spiking_definition must be one of {spiking.SPIKING_DEFINITIONS}, "
      f"got {definition!r}"
    )
  return definition


def also_surrogate(
  config: ml_collections.ConfigDict, spec: rnn.RNNSpec | lif.LIFSpec | None = None
) -> bool:
  """Whether a smoothed-proxy run also measures the surrogate Jacobian (module docstring)."""
  return spiking_definition(config, spec) == "smoothed" and bool(
    config.curvature.get("also_surrogate", False)
  )


def frozen_surrogate_loss(
  config: ml_collections.ConfigDict, spec: lif.LIFSpec, task: Task
) -> Callable[[rnn.Params, Batch], jax.Array]:
  """The spiking loss with spikes frozen at second order: ``jvp`` of its ``grad`` is the
  surrogate-gradient map's Jacobian."""
  frozen = spec._replace(surrogate=spec.surrogate._replace(second_order="frozen"))
  return spiking.spiking_loss(frozen, task, config.reg_l2)


def measured_loss(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec | lif.LIFSpec,
  task: Task,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
) -> Callable[[rnn.Params, Batch], jax.Array]:
  """The loss whose second derivative the probe measures (see the module docstring).

  ``total_loss`` itself for a rate network; for a spiking one the smoothed
  proxy's loss, or the spiking loss with spikes frozen at second order (its
  ``jvp`` of ``grad`` is the surrogate-gradient map's Jacobian).
  """
  definition = spiking_definition(config, spec)
  if definition is None:
    return total_loss
  if definition == "smoothed":
    return spiking.smoothed_loss(spec, task, config.reg_l2, float(config.curvature.temperature))
  return frozen_surrogate_loss(config, spec, task)


def measures_preconditioned(config: ml_collections.ConfigDict) -> bool:
  """Whether the run's optimizer has a diagonal preconditioner (``lambda_max_precond``)."""
  opt = config.get("optimizer")
  return opt is not None and opt.name in optimizers.ADAPTIVE


def curvature_batch(task: Task, batch_size: int) -> Batch:
  """The first ``batch_size`` validation examples (fixed across the run)."""
  return validation_batch(task, batch_size, "curvature.batch_size")


def parameter_mask(params: rnn.Params, spec: rnn.RNNSpec, subset) -> dict | None:
  """0/1 mask of the free coordinates of the measured subset (``None``: all free)."""
  if not spec.no_autapse:
    return None
  sub = select(params, subset)
  mask = {k: jnp.ones_like(v) for k, v in sub.items()}
  if "w_rec" in mask:
    mask["w_rec"] = rnn.recurrent_mask(spec, params["w_rec"].dtype)
  return mask


def without_silent_synapses(
  params: rnn.Params, spec: rnn.RNNSpec | lif.LIFSpec, subset, mask: dict | None
) -> dict | None:
  r"""``mask`` without the silent synapses of a Dale network (for ``lambda_max_precond``).

  Under Dale's law :func:`~credit.models.rnn.project` holds every ``W_rec`` entry that
  would change sign at exactly zero, so those coordinates do not move with the update
  that the edge-of-stability threshold is about. They still carry curvature (the L2
  term at least), and the adaptive preconditioner there is tiny (their gradient is
  mostly projected away, so :math:`\hat v \approx 0`): :math:`P^{-1}H` along them is
  about ``reg_l2 / P``, which can exceed the free coordinates' sharpness by far (a
  synapse whose presynaptic unit is silent too has no gradient at all, and
  :math:`P \to \epsilon`). Returns ``mask`` itself when nothing is silent by
  construction (no Dale's law, or ``W_rec`` not measured).
  """
  if not getattr(spec, "dale", False) or (subset is not None and "w_rec" not in subset):
    return mask
  sub = select(params, subset)
  base = mask if mask is not None else {k: jnp.ones_like(v) for k, v in sub.items()}
  w = params["w_rec"]
  return {**base, "w_rec": base["w_rec"] * (w != 0).astype(w.dtype)}


def measured_subset(params_option: str) -> tuple[str, ...] | None:
  """The parameter subset of a probe's ``params`` option (``"w_rec"`` or ``"all"``: None)."""
  return ("w_rec",) if params_option == "w_rec" else None


def free_dimension(spec: rnn.RNNSpec, subset: tuple[str, ...] | None) -> int:
  """Number of free coordinates of the measured subset: the autapses ``no_autapse`` masks excluded.

  The most Krylov steps a probe can take: the masked Hessian :math:`PHP` has
  eigenvalue 0 on every masked coordinate, so a basis that grew beyond the free
  subspace would report a spurious 0 (issue 11, item 10).
  """
  n = spec.n_hidden
  w_rec = n * (n - 1) if spec.no_autapse else n * n
  if subset == ("w_rec",):
    return w_rec
  return w_rec + n * spec.n_in + n + spec.n_out * n + spec.n_out


def free_coordinates_note(spec: rnn.RNNSpec, subset: tuple[str, ...] | None) -> str:
  """``"30 free coordinates of w_rec (6 autapses masked by model.no_autapse)"``-style text."""
  what = "w_rec" if subset == ("w_rec",) else "all parameters"
  note = f"{free_dimension(spec, subset)} free coordinates of {what}"
  if spec.no_autapse:
    note += f" ({spec.n_hidden} autapses masked by model.no_autapse)"
  return note


def random_start(key: jax.Array, like: Any, mask: Any | None) -> Any:
  """A standard Gaussian pytree shaped like ``like``, zero where ``mask`` is (Krylov start)."""
  flat, unravel = ravel_pytree(like)
  v = unravel(jax.random.normal(key, flat.shape, flat.dtype))
  return v if mask is None else jax.tree.map(jnp.multiply, mask, v)


class CurvatureMeasurement(NamedTuple):
  """One curvature measurement and what a later probe can reuse at the same point.

  Attributes:
    metrics: the probe's metrics (:func:`metric_names`).
    top: the Lanczos result (Ritz vectors when asked for).
    hvp: ``v -> H v`` over the measured subset (masked).
    gradient: the exact gradient over the measured subset (masked).
    mask: the 0/1 mask of the free coordinates (``None``: all free).
  """

  metrics: Metrics
  top: TopK
  hvp: Callable[[Any], Any]
  gradient: Any
  mask: Any | None


def make_curvature_measurement(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec | lif.LIFSpec,
  task: Task,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
  ritz_vectors: bool = False,
) -> Callable[[rnn.Params, Any, jax.Array], CurvatureMeasurement]:
  """Builds ``measure(params, opt_state, key) -> CurvatureMeasurement`` (unconditional).

  Args:
    config, spec, task, total_loss: as :func:`make_curvature_probe` (for a spiking
      network the measured loss is :func:`measured_loss`).
    ritz_vectors: also return the top ``curvature.top_k`` Ritz vectors (for
      the theory probe, :func:`credit.theory.tracking.make_curvature_and_theory_probe`).

  Returns:
    The measurement. Sizes are checked here, before anything compiles.
  """
  c = config.curvature
  batch = curvature_batch(task, c.batch_size)
  subset = measured_subset(c.params)
  dim = free_dimension(spec, subset)
  if not 1 <= c.top_k <= c.lanczos_steps <= dim:
    raise ValueError(
      f"need 1 <= curvature.top_k ({c.top_k}) <= curvature.lanczos_steps "
      f"({c.lanczos_steps}) <= Hessian dimension, the {free_coordinates_note(spec, subset)}"
    )
  # One jax.linearize per measurement: the primal gradient is shared by all HVPs
  # (about 20% cheaper each on seq-MNIST, benchmarks/curvature.py); its residuals
  # hold every example's activations, so chunked batches keep plain jvp-of-grad.
  linearize = c.chunk_size == 0 or c.chunk_size >= c.batch_size
  precond = measures_preconditioned(config)
  tol = float(c.get("lanczos_tol", 0.0))
  loss_fn = measured_loss(config, spec, task, total_loss)
  nonsymmetric = spiking_definition(config, spec) == "surrogate"
  second_loss = frozen_surrogate_loss(config, spec, task) if also_surrogate(config, spec) else None

  def symmetric(op, sub, params):
    """``op`` itself, or for the surrogate Jacobian its symmetric part (for Lanczos)."""
    return spiking.symmetric_part(op, select(params, sub)) if nonsymmetric else op

  def measure(params: rnn.Params, opt_state: Any, key: jax.Array) -> CurvatureMeasurement:
    k_v0, k_trace, k_flat = jax.random.split(key, 3)
    # A barrier keeps XLA from constant-folding through the fixed batch (cf. evaluate).
    fixed = jax.lax.optimization_barrier(batch)
    mask = parameter_mask(params, spec, subset)
    grad, jac = make_gradient_and_hvp(loss_fn, params, fixed, subset, c.chunk_size, mask, linearize)
    hvp = symmetric(jac, subset, params)
    point = select(params, subset)
    v0 = random_start(k_v0, point, mask)
    top = lanczos_top_k(
      hvp, v0, c.lanczos_steps, c.top_k, return_vectors=ritz_vectors, mask=mask, tol=tol
    )
    out = {"lambda_max": top.eigenvalues[0]}
    if tol > 0:
      out["lanczos_steps_taken"] = jnp.asarray(top.steps, top.eigenvalues.dtype)
    if nonsymmetric:
      out["jacobian_max_real"] = spiking.max_real_eigenvalue(jac, v0, c.lanczos_steps, mask)
    if second_loss is not None:
      jac_s = make_hvp(second_loss, params, fixed, subset, c.chunk_size, mask, linearize)
      sym = spiking.symmetric_part(jac_s, point)
      out["surrogate_lambda_max"] = lanczos_top_k(
        sym, v0, c.lanczos_steps, 1, mask=mask, tol=tol
      ).eigenvalues[0]
      out["jacobian_max_real"] = spiking.max_real_eigenvalue(jac_s, v0, c.lanczos_steps, mask)
    for i in range(2, c.top_k + 1):
      out[f"lambda_{i}"] = top.eigenvalues[i - 1]
    if c.trace_probes > 0:
      out["hessian_trace"] = hutchinson_trace(hvp, k_trace, point, c.trace_probes).estimate
    if c.flatness_probes > 0:
      if subset == ("w_rec",):
        hvp_w = hvp
      else:
        w_mask = None if mask is None else {"w_rec": mask["w_rec"]}
        hvp_w = symmetric(
          make_hvp(loss_fn, params, fixed, ("w_rec",), c.chunk_size, w_mask, linearize),
          ("w_rec",),
          params,
        )
      w = rnn.effective_w_rec(params, spec)
      kappa = relative_flatness(
        lambda v: hvp_w({"w_rec": v})["w_rec"], w, k_flat, c.flatness_probes
      )
      out["relative_flatness"] = kappa.estimate
    if precond:
      free = without_silent_synapses(params, spec, subset, mask)
      v0_free = v0 if free is mask else jax.tree.map(jnp.multiply, free, v0)
      out["lambda_max_precond"] = preconditioned_sharpness(
        hvp, config.optimizer, opt_state, subset, v0_free, c.lanczos_steps, free, tol
      )
    return CurvatureMeasurement(out, top, hvp, grad, mask)

  return measure


def check_opt_state(config: ml_collections.ConfigDict, opt_state: Any) -> Any:
  """``opt_state`` where ``lambda_max_precond`` needs it, else ``None``; an error if missing."""
  if not measures_preconditioned(config):
    return None  # only Adam-like states enter the probe's branches
  if opt_state is None:
    raise ValueError(
      f"lambda_max_precond ({config.optimizer.name}) needs the optimizer state: "
      "call probe(params, rule_state, key, step, opt_state)"
    )
  return opt_state


def make_curvature_probe(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec | lif.LIFSpec,
  task: Task,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
) -> Callable[..., Metrics]:
  """Builds ``probe(params, rule_state, key, step, opt_state) -> metrics`` (module docstring).

  ``opt_state`` (the optimizer state at this evaluation) is needed only for
  ``lambda_max_precond``, i.e. with an adaptive optimizer.

  Args:
    config: run config with a ``curvature`` block (``every > 0``).
    spec: the network spec.
    task: the task (its ``eval_sets["val"]`` gives the fixed batch).
    total_loss: the exact objective ``(params, batch) -> scalar`` (for a
      spiking network the probe measures :func:`measured_loss` instead).

  Returns:
    The probe. Sizes are checked here, before anything compiles.
  """
  c = config.curvature
  if c.every <= 0:
    raise ValueError(f"curvature.every must be > 0 for a curvature probe, got {c.every}")
  measure = make_curvature_measurement(config, spec, task, total_loss)
  names = metric_names(config, spec)
  every = int(c.every)

  def compute(params: rnn.Params, opt_state: Any, key: jax.Array) -> Metrics:
    return measure(params, opt_state, key).metrics

  def probe(
    params: rnn.Params,
    rule_state: Any,
    key: jax.Array,
    step: jax.Array,
    opt_state: Any = None,
  ) -> Metrics:
    del rule_state
    opt_state = check_opt_state(config, opt_state)
    return jax.lax.cond(step % every == 0, compute, skip_metrics(names), params, opt_state, key)

  return probe


def skip_metrics(names: tuple[str, ...]) -> Callable[..., Metrics]:
  """A ``lax.cond`` branch reporting NaN for every name (dtype of ``params["w_rec"]``)."""

  def skip(params: rnn.Params, *_) -> Metrics:
    return {name: jnp.full((), jnp.nan, params["w_rec"].dtype) for name in names}

  return skip


def preconditioned_sharpness(
  hvp: Callable[[Any], Any],
  opt: ml_collections.ConfigDict,
  opt_state: Any,
  subset: tuple[str, ...] | None,
  v0: Any,
  num_steps: int,
  mask: Any | None = None,
  tol: float = 0.0,
) -> jax.Array:
  r""":math:`\lambda_{max}(P^{-1}H)` by Lanczos on :math:`P^{-1/2} H P^{-1/2}`.

  :math:`P^{-1}H = P^{-1/2} (P^{-1/2} H P^{-1/2}) P^{1/2}` is similar to the
  symmetric :math:`P^{-1/2} H P^{-1/2}`, so both have the same (real) spectrum,
  and Lanczos applies to the latter. With a mask the operator is
  :math:`M P^{-1/2} H P^{-1/2} M` (diagonal factors commute with the mask).

  Args:
    hvp: ``v -> H v`` over ``select(params, subset)`` (masked, if ``mask``).
    opt: the ``optimizer`` config block; adaptive (:data:`~credit.training.optimizers.ADAPTIVE`).
    opt_state: its state at the point of ``hvp``.
    subset: the measured parameter names (``None``: all).
    v0: Lanczos start vector (zero on masked coordinates).
    num_steps: Lanczos steps (HVPs); with ``tol``, the most steps.
    mask: optional 0/1 pytree of the free coordinates.
    tol: Lanczos stopping tolerance (:func:`~credit.curvature.lanczos.lanczos_top_k`).

  Returns:
    The top eigenvalue; NaN where the preconditioner is not defined yet (Adam
    before its first update).
  """
  p, valid = optimizers.preconditioner(opt, opt_state)
  scale = jax.tree.map(jax.lax.rsqrt, select(p, subset))
  scale = jax.tree.map(lambda d, v: d.astype(v.dtype), scale, v0)

  if mask is not None:  # M P^{-1/2} H P^{-1/2} M: ``hvp`` may be masked by a larger mask
    scale = jax.tree.map(jnp.multiply, scale, mask)

  def matvec(v):
    return jax.tree.map(jnp.multiply, scale, hvp(jax.tree.map(jnp.multiply, scale, v)))

  top = lanczos_top_k(matvec, v0, num_steps, 1, mask=mask, tol=tol)
  return jnp.where(valid, top.eigenvalues[0], jnp.nan)
