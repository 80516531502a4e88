"""Compiled, seed-vmappable training: ``make_train(config)`` returns a pure ``train(key)``.

The purejaxrl idiom::

    train = make_train(config)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, num_seeds))

The whole run is one ``lax.scan`` over evaluation chunks, each a ``lax.scan``
over ``eval_every`` steps followed by an evaluation on the task's fixed sets.
:func:`make_trainer` exposes the same pieces (``init``, ``run_chunk``,
``evaluate``) for drivers that need the host between chunks (progress lines,
checkpoints); both paths give identical results.

The remedies of ``config.remedies`` enter here: the learning-rate schedule
(:func:`credit.training.optimizers.schedule`) and the weight and activity
noise of the gradient (:mod:`credit.training.remedies`); off by default, and
then the program is the same as without them.

A seed whose training loss exceeds ``config.max_loss`` or whose loss or
parameters turn non-finite is marked ``diverged`` and frozen: it gets no further
updates (its parameters stay those of the step before the blow-up); the other
seeds go on. A seed with a non-finite loss or score at an evaluation is marked
the same way there (:mod:`credit.training.divergence`). Reports leave diverged
seeds out and count them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from credit import rules, runtime, tasks
from credit.models import lif, network, rnn
from credit.tasks.base import Batch, Task, batch_at_steps
from credit.training import divergence, optimizers, remedies
from credit.training.objective import loss_grads_and_state, make_total_loss

import jax
import jax.numpy as jnp
import ml_collections
import optax

Metrics = dict[str, jax.Array]
# A probe measures something extra at each evaluation (curvature, alignment):
# ``probe(params, rule_state, key, step, opt_state) -> {name: scalar}``. ``step`` is
# the evaluation's step count, the same for every seed (not vmapped), so a probe
# can skip evaluations with ``lax.cond`` without paying for both branches.
# ``opt_state`` is the optimizer state (e.g. Adam's preconditioner for
# ``lambda_max_precond``); probes that do not need it accept and ignore it.
Probe = Callable[[rnn.Params, Any, jax.Array, jax.Array, optax.OptState], Metrics]


class TrainState(NamedTuple):
  """Everything one seed carries from step to step."""

  step: jax.Array
  params: rnn.Params
  opt_state: optax.OptState
  rule_state: Any
  key: jax.Array
  diverged: jax.Array


class Trainer(NamedTuple):
  """The pieces of a training run for one seed (each pure; vmap them over seeds).

  Attributes:
    init: ``key -> TrainState``.
    run_chunk: ``(state, num_steps) -> state`` (``num_steps`` static).
    evaluate: ``(state, step) -> metrics`` on the fixed evaluation sets, plus
      probes; ``step`` is the (unbatched) step count of this evaluation: under
      ``vmap`` over seeds pass it with ``in_axes=None``.
    eval_steps: the steps at which ``train`` evaluates (0 included).
    spec, task, rule, optimizer, total_loss: what the run is made of.
    seed_layout: how drivers lay several seeds on a device
      (:mod:`credit.training.seeds`).
  """

  init: Callable[[jax.Array], TrainState]
  run_chunk: Callable[[TrainState, int], TrainState]
  evaluate: Callable[[TrainState, jax.Array], Metrics]
  eval_steps: tuple[int, ...]
  spec: rnn.RNNSpec | lif.LIFSpec
  task: Task
  rule: rules.GradientRule
  optimizer: optax.GradientTransformation
  total_loss: Callable[[rnn.Params, Batch], jax.Array]
  seed_layout: str = "auto"


# Evaluation sets are run this many examples at a time (outputs_in_chunks).
EVAL_CHUNK = 1024


def model_spec(config: ml_collections.ConfigDict, task: Task) -> rnn.RNNSpec | lif.LIFSpec:
  """The network of ``config.model``: a rate :class:`~credit.models.rnn.RNNSpec`, or a
  spiking :class:`~credit.models.lif.LIFSpec` for ``model.kind = "lif"`` (the same spec
  validation builds from the task's shape, :func:`credit.training.config.network_spec`)."""
  from credit.training import config as config_lib  # config validates through this module

  return config_lib.network_spec(config, task)


def dtype_of(config: ml_collections.ConfigDict):
  return jnp.float64 if config.get("dtype", "float32") == "float64" else jnp.float32


def evaluation_steps(num_steps: int, eval_every: int) -> tuple[int, ...]:
  """``0, e, 2e, ...`` and ``num_steps`` itself when it is not a multiple of ``e``."""
  steps = list(range(0, num_steps + 1, eval_every))
  if steps[-1] != num_steps:
    steps.append(num_steps)
  return tuple(steps)


# Folded into a step's key for the noise remedies (credit.training.remedies).
_NOISE_SALT = 0x6E01


def _where_tree(pred: jax.Array, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def make_trainer(
  config: ml_collections.ConfigDict,
  task: Task | None = None,
  probes: tuple[Probe, ...] | None = None,
) -> Trainer:
  """Builds the training pieces from a validated config.

  Args:
    config: the run config (see ``configs/``); validated here.
    task: a prebuilt task (to share data between runs); built from the config
      when omitted.
    probes: extra measurements at each evaluation; by default those the
      config asks for (:func:`credit.training.probes.make_probes`).

  Returns:
    A :class:`Trainer`.
  """
  from credit.training import config as config_lib
  from credit.training import probes as probes_lib

  config_lib.validate(config)
  runtime.check()
  dtype = dtype_of(config)
  if task is None:
    task = tasks.make(config.task, config.task_options, dtype)
  config_lib.validate_against_task(config, task)
  spec = model_spec(config, task)
  net = network(spec)  # the model module: rnn or lif
  rule = rules.make(config.rule, spec, config.rule_options, task.loss_steps)
  optimizer = optimizers.make_optimizer(config.optimizer, optimizers.schedule(config))
  total_loss = make_total_loss(spec, task, config.reg_l2)
  if probes is None:
    probes = probes_lib.make_probes(config, spec, task, rule, total_loss)
  batch_size = config.batch_size
  max_loss = float(config.get("max_loss", math.inf))  # configs saved before the field: off
  noise = remedies.Noise.from_config(config)

  def gradient(state: TrainState, batch: Batch, k_rule: jax.Array):
    """``(loss, grads, rule state after this batch)``."""
    if not noise.active:
      return loss_grads_and_state(
        rule, spec, task, config.reg_l2, state.params, state.rule_state, batch, k_rule
      )
    # A key of its own, so that the batch and rule keys do not change with the noise.
    k_noise = jax.random.fold_in(state.key, _NOISE_SALT)
    return remedies.noisy_loss_and_grads(
      rule,
      spec,
      task,
      config.reg_l2,
      state.params,
      state.rule_state,
      batch,
      k_rule,
      k_noise,
      noise,
      objective=loss_grads_and_state,
    )

  def init(key: jax.Array) -> TrainState:
    k_params, k_rule, k_run = jax.random.split(key, 3)
    params = net.project(net.init_params(k_params, spec, dtype), spec)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      rule_state=rule.init(k_rule, params),
      key=k_run,
      diverged=jnp.zeros((), bool),
    )

  def train_step(state: TrainState, _) -> tuple[TrainState, None]:
    key, k_batch, k_rule = jax.random.split(state.key, 3)
    batch = task.sample_train(k_batch, batch_size)
    loss, grads, rule_state = gradient(state, batch, k_rule)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = net.project(optax.apply_updates(state.params, updates), spec)
    finite = (
      jnp.isfinite(loss)
      & (loss <= max_loss)
      & jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
    )
    ok = finite & ~state.diverged
    return (
      TrainState(
        step=state.step + 1,
        params=_where_tree(ok, params, state.params),
        opt_state=_where_tree(ok, opt_state, state.opt_state),
        rule_state=_where_tree(ok, rule_state, state.rule_state),
        key=key,
        diverged=state.diverged | ~finite,
      ),
      None,
    )

  def run_chunk(state: TrainState, num_steps: int) -> TrainState:
    state, _ = jax.lax.scan(train_step, state, None, length=num_steps)
    return state

  # Losses and scores only read the steps the mask can select: with static loss steps
  # (seq-MNIST: the last) the targets, masks and readouts of the other steps never exist.
  eval_batches = {k: batch_at_steps(b, task.loss_steps) for k, b in task.eval_sets.items()}

  def evaluate(state: TrainState, step: jax.Array) -> Metrics:
    out: Metrics = {}
    # The evaluation sets are constants of the program: the barrier stops XLA
    # from constant-folding whole-dataset reductions (e.g. argmax of targets)
    # at compile time, which costs seconds per set.
    eval_sets = jax.lax.optimization_barrier(eval_batches)
    for split, batch in eval_sets.items():
      y = net.outputs_in_chunks(state.params, spec, batch.inputs, EVAL_CHUNK, task.loss_steps)
      out[f"{split}_loss"] = task.loss(y, batch)
      out[f"{split}_acc"] = task.score(y, batch)
    out["gap_acc"] = out["train_acc"] - out["test_acc"]
    out["gap_loss"] = out["test_loss"] - out["train_loss"]
    probe_key = jax.random.fold_in(state.key, 7919)
    for i, probe in enumerate(probes):
      k = jax.random.fold_in(probe_key, i)
      out.update(probe(state.params, state.rule_state, k, step, state.opt_state))
    out["diverged"] = state.diverged
    out["step"] = state.step
    return out

  return Trainer(
    init=init,
    run_chunk=run_chunk,
    evaluate=evaluate,
    eval_steps=evaluation_steps(config.num_steps, config.eval_every),
    spec=spec,
    task=task,
    rule=rule,
    optimizer=optimizer,
    total_loss=total_loss,
    seed_layout=config.get("seed_layout", "auto"),
  )


def make_train(
  config: ml_collections.ConfigDict, task: Task | None = None
) -> Callable[[jax.Array], tuple[TrainState, Metrics]]:
  """Returns a pure ``train(key) -> (final_state, metrics)``.

  ``metrics[name]`` has one entry per evaluation step
  (``trainer.eval_steps``); jit it, and vmap it over seed keys.
  """
  trainer = make_trainer(config, task)
  steps = trainer.eval_steps
  chunk = config.eval_every
  n_full, remainder = divmod(config.num_steps, chunk)

  def evaluate(s: TrainState, step) -> tuple[TrainState, Metrics]:
    return divergence.after_evaluation(s, trainer.evaluate(s, step))

  def train(key: jax.Array) -> tuple[TrainState, Metrics]:
    state = trainer.init(key)
    state, first = evaluate(state, jnp.asarray(0, jnp.int32))

    def body(s, step):
      return evaluate(trainer.run_chunk(s, chunk), step)

    full_steps = jnp.asarray(steps[1 : 1 + n_full], jnp.int32)
    state, history = jax.lax.scan(body, state, full_steps)
    parts = [jax.tree.map(lambda x: x[None], first), history]
    if remainder:
      state, last = evaluate(trainer.run_chunk(state, remainder), jnp.asarray(steps[-1], jnp.int32))
      parts.append(jax.tree.map(lambda x: x[None], last))
    return state, jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

  return train
