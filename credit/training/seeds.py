"""How the seeds of a run share a device: vectorized (``vmap``) or one after the other.

Seeds are independent, so a per-seed function can run over a stacked seed
axis either as one vectorized program (``jax.vmap``: batched matrix products,
what accelerators want) or as a loop inside one compiled program
(``jax.lax.map``: each seed's products keep their own shapes). On XLA's CPU
backend the batched products of ``vmap`` are much slower than the plain ones
(``benchmarks/train_step.py``: a 5-seed BPTT step cost about twice as much
per seed as a single seed), so ``"auto"`` maps over seeds on CPU and vmaps
elsewhere. Results agree to rounding either way; the layout is part of the
config so that a run's record says which one produced it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

SEED_LAYOUTS = ("auto", "vmap", "map")


def resolve(layout: str) -> str:
  """``"vmap"`` or ``"map"`` for a configured layout (``"auto"``: by the default backend).

  Raises:
    ValueError: for a layout not in :data:`SEED_LAYOUTS`.
  """
  if layout not in SEED_LAYOUTS:
    raise ValueError(f"seed_layout must be one of {SEED_LAYOUTS}, got {layout!r}")
  if layout == "auto":
    return "map" if jax.default_backend() == "cpu" else "vmap"
  return layout


def over_seeds(fn: Callable, layout: str) -> Callable:
  """``fn(per_seed, *shared)`` lifted to a stacked seed axis on its first argument.

  Args:
    fn: a function of one seed's pytree and arguments shared by all seeds
      (static values such as a step count may be among them).
    layout: one of :data:`SEED_LAYOUTS`.

  Returns:
    ``g(stacked, *shared)`` whose outputs carry the seed axis first.
  """
  if resolve(layout) == "vmap":

    def vmapped(stacked, *shared):
      return jax.vmap(lambda s: fn(s, *shared))(stacked)

    return vmapped

  def mapped(stacked, *shared):
    return jax.lax.map(lambda s: fn(s, *shared), stacked)

  return mapped
