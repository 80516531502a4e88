r"""The linearized update map of a learning rule: :math:`v \mapsto J_{rule} v`.

A rule trains by :math:`\theta_{k+1} = \theta_k - \eta\, \hat g(\theta_k)`, where
:math:`\hat g` is the rule's descent direction on a batch (its gradient of the
data loss plus the exact L2 gradient, :func:`credit.training.objective.loss_and_grads`).
Near a point :math:`\theta^*` the map linearizes to

.. math::

  \theta_{k+1} - \theta^* \approx (I - \eta J_{rule})(\theta_k - \theta^*) - \eta\,\hat g(\theta^*),
  \qquad J_{rule} = \frac{\partial \hat g}{\partial \theta}\Big|_{\theta^*}.

For an exact rule :math:`J_{rule} = H`, the Hessian of the total loss. For a
truncated rule :math:`\hat g \approx M \nabla L` and :math:`J_{rule} \approx M H`
near a minimum; :math:`J_{rule}` is in general not symmetric.

:func:`make_rule_jvp` returns :math:`v \mapsto J_{rule} v` on a **fixed** batch
and a fixed rule key (so that :math:`\hat g` is a deterministic function of the
parameters), over a parameter subset :math:`S` with the other parameters held
fixed (the convention of :func:`credit.curvature.hvp.make_hvp`):
:math:`J_{SS} = \partial \hat g_S / \partial \theta_S`, optionally masked to
:math:`P J_{SS} P` with the 0/1 mask :math:`P` of the free synapses.

Forward mode (``jax.jvp`` through the rule) is exact, except through
``stop_gradient`` or ``custom_vjp``: forward mode gives a stopped value a zero
tangent, but a rule that stops the gradient of :math:`h_{t-1}` (e.g.
``three_factor_autodiff``) still has an :math:`\hat g` whose **value** depends
on :math:`h_{t-1}(\theta)`. ``method="auto"`` therefore inspects the program
of ``rule.grads`` (not the loss: ``log_softmax`` stops the gradient of its
shift, which is harmless) and falls back to central finite differences when
it finds either. Exact rules train through ``value_and_grad`` and always use
forward mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from credit.curvature.hvp import select
from credit.models import rnn
from credit.rules.base import GradientRule
from credit.tasks.base import Batch, Task
from credit.training.objective import loss_and_grads

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
MatVec = Callable[[PyTree], PyTree]
METHODS = ("auto", "jvp", "fd")
# Primitives whose forward-mode derivative differs from the derivative of the value.
_OPAQUE_TO_JVP = ("stop_gradient", "custom_vjp")


def make_rule_grad(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  reg_l2: float,
  params: rnn.Params,
  rule_state: Any,
  batch: Batch,
  key: jax.Array,
  subset: Sequence[str] | None = None,
) -> Callable[[dict], dict]:
  r"""The rule's descent direction as a function of the measured parameters.

  .. math::

    \theta_S \mapsto \hat g_S(\theta_S, \theta_{\bar S})

  on a fixed batch and rule key: the map the training step applies (before
  the optimizer), restricted to the subset.

  Args:
    rule: the learning rule.
    spec: the network spec.
    task: the task (its loss).
    reg_l2: L2 coefficient (its exact gradient is part of :math:`\hat g`).
    params: the full parameters; entries outside ``subset`` are held fixed.
    rule_state: the rule's per-seed constants.
    batch: the fixed batch.
    key: the fixed rule key.
    subset: measured parameter names (e.g. ``("w_rec",)``); ``None`` for all.

  Returns:
    ``grad_fn(sub) -> g_sub`` with the structure of ``select(params, subset)``.
  """
  select(params, subset)  # validates names

  def grad_fn(sub: dict) -> dict:
    _, g = loss_and_grads(rule, spec, task, reg_l2, {**params, **sub}, rule_state, batch, key)
    return select(g, subset)

  return grad_fn


def _subjaxprs(value) -> list:
  if hasattr(value, "eqns"):
    return [value]
  if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    return [value.jaxpr]
  if isinstance(value, tuple | list):
    return [j for v in value for j in _subjaxprs(v)]
  return []


def _primitive_names(jaxpr) -> set[str]:
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for value in eqn.params.values():
      for sub in _subjaxprs(value):
        names |= _primitive_names(sub)
  return names


def opaque_to_forward_mode(fn: Callable, *args) -> bool:
  """True if ``fn(*args)``'s program holds ``stop_gradient`` or ``custom_vjp``.

  Searches the traced program, sub-programs of scans and conds included.
  Tracing only: nothing is computed, and ``args`` may be tracers.
  """
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
  names = _primitive_names(jax.make_jaxpr(fn)(*shapes).jaxpr)
  return any(opaque in name for name in names for opaque in _OPAQUE_TO_JVP)


def rule_needs_finite_differences(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  params: rnn.Params,
  rule_state: Any,
  batch: Batch,
  key: jax.Array,
) -> bool:
  """True for a non-exact rule whose ``grads`` forward mode cannot differentiate exactly."""
  if rule.exact:
    return False
  traj = jax.eval_shape(lambda p: rnn.forward(p, spec, batch.inputs, start=rule.first_step), params)
  errors = jax.ShapeDtypeStruct(traj.y.shape, traj.y.dtype)
  return opaque_to_forward_mode(
    lambda p, tr, e: rule.grads(p, rule_state, tr, e, key), params, traj, errors
  )


def jvp_operator(
  fn: Callable[[PyTree], PyTree],
  point: PyTree,
  method: str = "jvp",
  fd_step: float | None = None,
  mask: PyTree | None = None,
) -> MatVec:
  r"""The Jacobian-vector product :math:`v \mapsto \partial f(\theta)\, v` of ``fn`` at ``point``.

  ``"jvp"`` uses forward mode; ``"fd"`` the central difference

  .. math::

    J v \approx \frac{f(\theta + \epsilon v) - f(\theta - \epsilon v)}{2 \epsilon},
    \qquad \epsilon = \frac{\epsilon_0 (1 + \|\theta\|)}{\|v\|},

  with :math:`\epsilon_0` = ``fd_step``, by default :math:`0.1\sqrt{\epsilon_{mach}}`
  of the dtype (3.5e-5 in float32, 1.5e-9 in float64). That is smaller than
  the textbook :math:`\epsilon_{mach}^{1/3}` on purpose: with ReLU units
  :math:`\hat g` is only piecewise smooth, and a step that moves
  pre-activations across zero adds jumps that swamp the derivative (measured
  on a small seq-MNIST net: 1e-4 relative error at this step, over 100% at
  :math:`\epsilon_{mach}^{1/3}`). :func:`make_rule_jvp` chooses between the
  two methods.

  Args:
    fn: a map from pytrees shaped like ``point`` to pytrees of the same shape.
    point: where to linearize.
    method: ``"jvp"`` or ``"fd"``.
    fd_step: relative finite-difference step :math:`\epsilon_0`.
    mask: optional 0/1 pytree like ``point``: the operator becomes :math:`P J P`.

  Returns:
    ``matvec(v) -> J v``.
  """
  if method not in ("jvp", "fd"):
    raise ValueError(f"method must be 'jvp' or 'fd', got {method!r}")
  if method == "jvp":

    def matvec(v):
      return jax.jvp(fn, (point,), (v,))[1]

  else:
    flat_point, _ = ravel_pytree(point)
    dtype = flat_point.dtype
    eps0 = 0.1 * float(jnp.finfo(dtype).eps) ** 0.5 if fd_step is None else fd_step
    scale = eps0 * (1.0 + jnp.linalg.norm(flat_point))

    def matvec(v):
      norm_v = jnp.linalg.norm(ravel_pytree(v)[0])
      eps = scale / jnp.where(norm_v > 0, norm_v, 1.0)
      plus = fn(jax.tree.map(lambda p, d: p + eps * d, point, v))
      minus = fn(jax.tree.map(lambda p, d: p - eps * d, point, v))
      return jax.tree.map(lambda a, b: (a - b) / (2.0 * eps), plus, minus)

  if mask is None:
    return matvec

  def masked(v):
    return jax.tree.map(jnp.multiply, mask, matvec(jax.tree.map(jnp.multiply, mask, v)))

  return masked


def linearize_rule(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  reg_l2: float,
  params: rnn.Params,
  rule_state: Any,
  batch: Batch,
  key: jax.Array,
  subset: Sequence[str] | None = None,
  mask: PyTree | None = None,
  method: str = "auto",
) -> tuple[dict, MatVec]:
  r"""The rule's descent direction at ``params`` and its Jacobian, computed once for many products.

  With forward mode this is ``jax.linearize``: the primal (forward pass and
  rule) runs once and each product :math:`J v` costs only the tangent pass,
  which is what Arnoldi needs. With finite differences each product costs two
  gradient evaluations.

  Args:
    rule, spec, task, reg_l2, params, rule_state, batch, key, subset, mask,
      method: as in :func:`make_rule_jvp`.

  Returns:
    ``(g, jvp)``: :math:`\hat g_S` (masked like the products when ``mask`` is
    given) and ``v -> J v``.
  """
  method = _resolve(method, rule, spec, params, rule_state, batch, key)
  grad_fn = make_rule_grad(rule, spec, task, reg_l2, params, rule_state, batch, key, subset)
  point = select(params, subset)
  if method == "jvp":
    g, linear = jax.linearize(grad_fn, point)
  else:
    g, linear = grad_fn(point), jvp_operator(grad_fn, point, "fd")
  if mask is None:
    return g, linear
  apply = lambda t: jax.tree.map(jnp.multiply, mask, t)
  return apply(g), lambda v: apply(linear(apply(v)))


def _resolve(method, rule, spec, params, rule_state, batch, key) -> str:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if method == "auto":
    fd = rule_needs_finite_differences(rule, spec, params, rule_state, batch, key)
    return "fd" if fd else "jvp"
  return method


def make_rule_jvp(
  rule: GradientRule,
  spec: rnn.RNNSpec,
  task: Task,
  reg_l2: float,
  params: rnn.Params,
  rule_state: Any,
  batch: Batch,
  key: jax.Array,
  subset: Sequence[str] | None = None,
  mask: PyTree | None = None,
  method: str = "auto",
) -> MatVec:
  r"""The linearized update map's Jacobian, :math:`v \mapsto J_{rule} v`, of one rule at ``params``.

  :math:`J_{rule} = \partial \hat g_S / \partial \theta_S` of
  :func:`make_rule_grad` (exact for ``method="jvp"``; for an exact rule it is
  the Hessian-vector product of the total loss).

  Args:
    rule, spec, task, reg_l2, params, rule_state, batch, key, subset: as in
      :func:`make_rule_grad`.
    mask: optional 0/1 pytree like ``select(params, subset)`` (e.g.
      :func:`credit.curvature.tracking.parameter_mask`): :math:`P J P`.
    method: ``"jvp"``, ``"fd"`` (see :func:`jvp_operator`) or ``"auto"``
      (default): ``"fd"`` if :func:`rule_needs_finite_differences`, else ``"jvp"``.

  Returns:
    ``jvp(v) -> J v``, both with the structure of ``select(params, subset)``.
  """
  method = _resolve(method, rule, spec, params, rule_state, batch, key)
  grad_fn = make_rule_grad(rule, spec, task, reg_l2, params, rule_state, batch, key, subset)
  return jvp_operator(grad_fn, select(params, subset), method=method, mask=mask)


def dense_matrix(matvec: MatVec, like: PyTree) -> jax.Array:
  """The dense matrix of a linear operator on pytrees shaped like ``like`` (tests, tiny nets)."""
  flat, unravel = ravel_pytree(like)
  eye = jnp.eye(flat.size, dtype=flat.dtype)
  columns = jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(eye)
  return columns.T
