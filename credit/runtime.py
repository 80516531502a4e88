"""Process-wide JAX/XLA settings that credit relies on, applied at import.

1. ``--xla_cpu_experimental_ynn_fusion_type=`` (empty: off). With jax/jaxlib
   0.10.2 the XLA CPU backend's YNNPACK fusions miscompile a vmapped
   ``log_softmax`` followed by a slice: under ``jit(vmap(f))`` seeds 2 and 3
   silently returned the values of seeds 0 and 1. ``tests/test_training.py``
   keeps a regression test (vmapped seeds == each seed alone). XLA reads
   ``XLA_FLAGS`` when its CPU backend starts, so this works as long as no
   JAX computation ran before credit was imported.
2. ``JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS=1``: arrays closed over by a jitted
   function (task data closed over by ``train(key)``) are passed to XLA as
   buffers rather than embedded as program constants. JAX reads it at import,
   so it only takes effect when credit is imported before jax; without it,
   programs are correct but compile more slowly.
"""

from __future__ import annotations

import os
import sys
import warnings

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _backend_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))
  except Exception:  # noqa: BLE001 - private API; assume the worst
    return True


def configure() -> None:
  """Applies the settings above (idempotent)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    if _backend_started():
      warnings.warn(
        "credit was imported after JAX started its backend, so XLA's CPU YNNPACK "
        f"fusions stay on; set XLA_FLAGS={YNN_FLAG} before starting Python (they "
        "miscompile some vmapped programs in jaxlib 0.10.2).",
        stacklevel=3,
      )
    else:
      os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()
  if "jax" not in sys.modules:
    os.environ.setdefault("JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS", "1")
