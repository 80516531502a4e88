r"""Curvature measured inside the compiled, seed-vmapped training program.

At every evaluation whose step is a multiple of ``config.curvature.every`` the
probe measures, on the first ``config.curvature.batch_size`` validation
examples (a fixed batch, as the reference code) and for the exact objective
``total_loss`` (data loss + L2, never a rule's approximate gradient):

* ``lambda_max``, ``lambda_2`` .. ``lambda_k``: the top ``top_k`` signed
  eigenvalues of the Hessian w.r.t. ``curvature.params`` (``"w_rec"`` as the
  reference, or ``"all"``), by ``lanczos_steps`` Lanczos steps from a Gaussian
  start vector drawn from the probe key. On trained seq-MNIST networks 10 steps
  match the reference power iteration (18-60 HVPs) to float32 round-off, and 8
  to 4e-4 (``benchmarks/curvature.py``); ``lambda_2`` .. need more steps than
  ``lambda_max`` to converge;
* ``hessian_trace`` (``trace_probes > 0``): Hutchinson estimate of the trace
  of the same Hessian;
* ``relative_flatness`` (``flatness_probes > 0``): Hutchinson estimate of the
  relative flatness of ``W_rec`` (:mod:`credit.curvature.flatness`).

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

Other evaluations return NaN. ``step`` is not vmapped over seeds, so the
``lax.cond`` stays a real branch and skipped evaluations cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from credit.curvature import spiking
from credit.curvature.flatness import relative_flatness
from credit.curvature.hvp import make_hvp, select
from credit.curvature.lanczos import lanczos_top_k
from credit.curvature.trace import hutchinson_trace
from credit.models import lif, rnn
from credit.tasks.base import Batch, Task, validation_batch

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
  if not isinstance(spec, lif.LIFSpec):
    return total_loss
  c = config.curvature
  definition = c.get("spiking_definition", "smoothed")
  if definition == "smoothed":
    return spiking.smoothed_loss(spec, task, config.reg_l2, float(c.temperature))
  if definition == "surrogate":
    frozen = spec._replace(surrogate=spec.surrogate._replace(second_order="frozen"))
    return spiking.spiking_loss(frozen, task, config.reg_l2)
  raise ValueError(
    f"curvature.spiking_definition must be one of {spiking.SPIKING_DEFINITIONS}, got {definition!r}"
  )


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


def make_curvature_probe(
  config: ml_collections.ConfigDict,
  spec: rnn.RNNSpec | lif.LIFSpec,
  task: Task,
  total_loss: Callable[[rnn.Params, Batch], jax.Array],
) -> Callable[[rnn.Params, Any, jax.Array, jax.Array], Metrics]:
  """Builds ``probe(params, rule_state, key, step) -> metrics`` (see the module docstring).

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
  batch = curvature_batch(task, c.batch_size)
  subset = measured_subset(c.params)
  dim = free_dimension(spec, subset)
  if not 1 <= c.top_k <= c.lanczos_steps <= dim:
    raise ValueError(
      f"need 1 <= curvature.top_k ({c.top_k}) <= curvature.lanczos_steps "
      f"({c.lanczos_steps}) <= Hessian dimension, the {free_coordinates_note(spec, subset)}"
    )
  names = metric_names(config, spec)
  every = int(c.every)
  loss_fn = measured_loss(config, spec, task, total_loss)
  nonsymmetric = spiking_definition(config, spec) == "surrogate"
  # One jax.linearize per measurement: the primal gradient is shared by all HVPs
  # (about 20% cheaper each on seq-MNIST, benchmarks/curvature.py); its residuals
  # hold every example's activations, so chunked batches keep plain jvp-of-grad.
  linearize = c.chunk_size == 0 or c.chunk_size >= c.batch_size

  def operator(params, fixed, sub, mask):
    """``(A, its symmetric part)`` on ``sub`` (the same operator twice when symmetric)."""
    op = make_hvp(loss_fn, params, fixed, sub, c.chunk_size, mask, linearize)
    return op, (spiking.symmetric_part(op, select(params, sub)) if nonsymmetric else op)

  def compute(params: rnn.Params, key: jax.Array) -> Metrics:
    k_v0, k_trace, k_flat = jax.random.split(key, 3)
    # A barrier keeps XLA from constant-folding through the fixed batch (cf. evaluate).
    fixed = jax.lax.optimization_barrier(batch)
    mask = parameter_mask(params, spec, subset)
    jac, hvp = operator(params, fixed, subset, mask)
    point = select(params, subset)
    v0 = random_start(k_v0, point, mask)
    top = lanczos_top_k(hvp, v0, c.lanczos_steps, c.top_k, mask=mask)
    out = {"lambda_max": top.eigenvalues[0]}
    if nonsymmetric:
      out["jacobian_max_real"] = spiking.max_real_eigenvalue(jac, v0, c.lanczos_steps, mask)
    for i in range(2, c.top_k + 1):
      out[f"lambda_{i}"] = top.eigenvalues[i - 1]
    if c.trace_probes > 0:
      out["hessian_trace"] = hutchinson_trace(hvp, k_trace, point, c.trace_probes).estimate
    if c.flatness_probes > 0:
      if subset == ("w_rec",):
        hvp_w = hvp
      else:
        w_mask = None if mask is None else {"w_rec": mask["w_rec"]}
        hvp_w = operator(params, fixed, ("w_rec",), w_mask)[1]
      w = rnn.effective_w_rec(params, spec)
      kappa = relative_flatness(
        lambda v: hvp_w({"w_rec": v})["w_rec"], w, k_flat, c.flatness_probes
      )
      out["relative_flatness"] = kappa.estimate
    return out

  def probe(params: rnn.Params, rule_state: Any, key: jax.Array, step: jax.Array) -> Metrics:
    del rule_state
    dtype = params["w_rec"].dtype

    def skip(params, key):
      del params, key
      return {name: jnp.full((), jnp.nan, dtype) for name in names}

    return jax.lax.cond(step % every == 0, compute, skip, params, key)

  return probe
