"""The seed axis sharded over every device: a 1-D mesh ``("seeds",)``.

Seeds are independent, so data parallelism over seeds needs no collective:
each device runs its slice of the vmapped seeds. The stacked ``TrainState``
and the metrics carry ``NamedSharding(mesh, P("seeds"))``; the Trainer's
pieces are jitted with those in/out shardings, so one program runs on one
CPU, many GPUs, TPU cores, or every device of several hosts after
``jax.distributed.initialize()`` (``jax.devices()`` is then global).
Training chunks run under ``shard_map`` over each device's seeds, laid out
as the config's ``seed_layout`` (:mod:`credit.training.seeds`: one after the
other on CPU, vmapped on accelerators); evaluation runs with ``lax.map`` over
them, one seed at a time, because a vmapped evaluation's reductions over
examples change order with the number of seeds per device. Per-seed results
are then bitwise the same on any device count (tests/test_sweep.py; XLA:CPU
needs the same thread-pool size, see :mod:`credit.sweeps.runner`).

**Padding.** When ``num_seeds`` is not a multiple of the device count, the
seed axis is padded with copies of the last seed's key, computed and dropped.
Seed ``i`` keeps the key it has on one device
(``split(key(config.seed), num_seeds)[i]``), so the results do not depend on
the number of devices; the cost is at most ``devices - 1`` wasted seed slots.

**Host copies.** :meth:`ShardedSeeds.to_host` gathers a sharded pytree to
every process as NumPy arrays, without the padding and with typed PRNG keys
turned into their raw ``key_data``; :meth:`ShardedSeeds.put` is its inverse.
Checkpoints hold these host copies, so a sweep resumes on a different number
of devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from credit.training.run import seed_keys
from credit.training.seeds import over_seeds
from credit.training.train import Metrics, Trainer, TrainState

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SEED_AXIS = "seeds"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` of ``jax.devices()`` (all by default)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices, but only {len(devices)} are visible")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (SEED_AXIS,))


def padded_size(num_seeds: int, num_devices: int) -> int:
  """The smallest multiple of ``num_devices`` that holds ``num_seeds``."""
  return -(-num_seeds // num_devices) * num_devices


def _pad_index(num_seeds: int, size: int) -> np.ndarray:
  return np.minimum(np.arange(size), num_seeds - 1)


class ShardedSeeds(NamedTuple):
  """A Trainer's pieces over the stacked seeds, jitted with the seed axis sharded.

  Attributes:
    init: ``() -> state``: the stacked initial state of the (padded) seeds.
    run_chunk: ``(state, num_steps) -> state`` (``num_steps`` static; the
      input state is donated).
    evaluate: ``(state, step) -> metrics``, each ``[padded seeds]``; each
      device evaluates its seeds one after the other (``lax.map``).
    to_host: ``tree -> NumPy tree`` without the padding (keys as key data).
    put: ``NumPy tree -> sharded tree``, the inverse of ``to_host``.
    state_shapes: the host-side shapes and dtypes of one unpadded state.
    metric_shapes: the host-side shapes and dtypes of one evaluation.
    num_seeds, padded: seeds of the run, and their padded count.
    mesh: where it runs.
  """

  init: Callable[[], TrainState]
  run_chunk: Callable[[TrainState, int], TrainState]
  evaluate: Callable[[TrainState, int], Metrics]
  to_host: Callable[[Any], Any]
  put: Callable[[Any], TrainState]
  state_shapes: Any
  metric_shapes: dict[str, jax.ShapeDtypeStruct]
  num_seeds: int
  padded: int
  mesh: Mesh


def _is_key(x) -> bool:
  return isinstance(x, jax.Array | jax.ShapeDtypeStruct) and jax.dtypes.issubdtype(
    x.dtype, jax.dtypes.prng_key
  )


def _key_data(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def compile_sharded(
  trainer: Trainer, config: ml_collections.ConfigDict, mesh: Mesh
) -> ShardedSeeds:
  """Jits ``trainer``'s pieces over ``config.num_seeds`` seeds sharded on ``mesh``.

  Seed ``i`` uses ``credit.training.run.seed_keys(config)[i]``, as
  ``experiments/train.py`` does.
  """
  num_seeds = config.num_seeds
  size = padded_size(num_seeds, mesh.size)
  seeds = NamedSharding(mesh, P(SEED_AXIS))
  replicated = NamedSharding(mesh, P())
  index = _pad_index(num_seeds, size)

  def init() -> TrainState:
    # Keys are made inside the program, so no host array needs placing: the
    # same code is correct when the mesh spans several processes.
    return jax.vmap(trainer.init)(seed_keys(config)[index])

  init_fn = jax.jit(init, out_shardings=seeds)
  run_local = over_seeds(trainer.run_chunk, trainer.seed_layout)

  def run_chunk(state: TrainState, num_steps: int) -> TrainState:
    return jax.shard_map(
      lambda s: run_local(s, num_steps),
      mesh=mesh,
      in_specs=P(SEED_AXIS),
      out_specs=P(SEED_AXIS),
      check_vma=False,
    )(state)

  chunk_fn = jax.jit(
    run_chunk,
    static_argnums=1,
    in_shardings=(seeds,),
    out_shardings=seeds,
    donate_argnums=0,
  )

  def evaluate_local(state: TrainState, step: jax.Array) -> Metrics:
    # One seed at a time: a vmapped evaluation reduces over examples in an
    # order that depends on how many seeds share a device, which would make
    # the metrics' last bits depend on the device count.
    return jax.lax.map(lambda s: trainer.evaluate(s, step), state)

  evaluate_fn = jax.jit(
    jax.shard_map(
      evaluate_local,
      mesh=mesh,
      in_specs=(P(SEED_AXIS), P()),
      out_specs=P(SEED_AXIS),
      check_vma=False,  # the model's scans start from unvarying zeros: harmless here
    ),
    in_shardings=(seeds, replicated),
    out_shardings=seeds,
  )
  key_data_fn = jax.jit(_key_data, out_shardings=seeds)
  state_abstract = jax.eval_shape(init)
  key_impl = jax.random.key_impl(jax.random.key(0))

  def wrap(tree):
    return jax.tree.map(
      lambda x, a: jax.random.wrap_key_data(x, impl=key_impl) if _is_key(a) else x,
      tree,
      state_abstract,
    )

  wrap_fn = jax.jit(wrap, out_shardings=seeds)

  def evaluate(state: TrainState, step: int) -> Metrics:
    return evaluate_fn(state, np.int32(step))

  def to_host(tree):
    tree = key_data_fn(tree)
    if jax.process_count() > 1:
      tree = multihost_utils.process_allgather(tree, tiled=True)
    else:
      tree = jax.device_get(tree)
    return jax.tree.map(lambda x: np.asarray(x)[:num_seeds], tree)

  def put(host_tree) -> TrainState:
    def place(x):
      x = np.asarray(x)[index]
      return jax.make_array_from_callback(x.shape, seeds, lambda i: x[i])

    return wrap_fn(jax.tree.map(place, host_tree))

  def host_shape(x):
    x = jax.ShapeDtypeStruct(x.shape, x.dtype)
    if _is_key(x):
      x = jax.eval_shape(jax.random.key_data, x)
    return jax.ShapeDtypeStruct((num_seeds,) + x.shape[1:], x.dtype)

  metric_abstract = jax.eval_shape(
    jax.vmap(trainer.evaluate, in_axes=(0, None)), state_abstract, jnp.int32(0)
  )
  return ShardedSeeds(
    init=init_fn,
    run_chunk=chunk_fn,
    evaluate=evaluate,
    to_host=to_host,
    put=put,
    state_shapes=jax.tree.map(host_shape, state_abstract),
    metric_shapes={k: host_shape(v) for k, v in metric_abstract.items()},
    num_seeds=num_seeds,
    padded=size,
    mesh=mesh,
  )
