"""Process-wide JAX/XLA settings that credit relies on, applied at import.

1. ``--xla_cpu_experimental_ynn_fusion_type=`` (empty: XLA's CPU backend makes
   no YNNPACK fusions). With jax/jaxlib 0.10.2 its elementwise and its reduction
   fusions (each on its own) miscompile a float32 ``log_softmax`` followed by a
   slice under ``jit(vmap(f))``: seeds 2 and 3 silently returned the values of
   seeds 0 and 1 (float64 programs are not affected: YNNPACK does not fuse
   them); ``tests/test_training.py::test_vmapped_float32_seeds_equal_each_seed_alone``
   guards it. Keeping only the ``dot`` fusions would also be safe, but
   ``benchmarks/train_step.py --compare_ynn`` measured the training step 20-25%
   slower with them than without any.
2. ``jax_use_simplified_jaxpr_constants``: arrays closed over by a jitted
   function (task data closed over by ``train(key)``) are passed to XLA as
   buffers rather than embedded as program constants (faster compiles).
3. glibc's heap (Linux): :func:`trim_heap` (``malloc_trim(0)``) hands the free
   pages of the heap back to the system. XLA's CPU compiler frees several hundred
   MB after compiling each program, which glibc keeps in a fragmented heap, so a
   sweep's resident memory kept every compile's high-water mark; the drivers trim
   after each program's first call (its compile), where it costs milliseconds
   once. Setting ``mallopt(M_MMAP_THRESHOLD, 4 MB)`` at import did the same for the
   heap (peak 1.48 instead of 1.60 GB on the shortened seq-MNIST protocol) but made
   every temporary of 4 MB or more a fresh mapping, page-faulted and zeroed again
   at every call of a compiled program: on this 2-core virtual machine it cost the
   seq-MNIST BPTT step 1.14-1.41x (N = 128) and 1.39x at N = 512 (44.6 of 91.4 ms
   in system time), so credit no longer sets it.

XLA reads ``XLA_FLAGS`` when its CPU backend starts, at the first JAX
computation, not at ``import jax``; so ``import jax`` before ``import credit``
is fine. When a computation already ran with the unsafe fusions on,
:func:`check` (called before any training program is built) raises instead of
letting vmapped seeds be silently wrong.
"""

from __future__ import annotations

import os
import sys
import warnings

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_FLAG = f"--{YNN_OPTION}="
# YNNPACK fusion kinds known to miscompile vmapped float32 programs (see above).
UNSAFE_YNN_KINDS = ("eltwise", "reduce")

# Whether XLA's CPU backend runs (or will run) with safe fusion settings; set by configure().
SAFE = True


def _backend_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))
  except Exception:  # noqa: BLE001 - private API; assume the worst
    return True


def _ynn_setting(flags: str) -> str | None:
  """The value given to the YNN fusion flag in ``flags``, or ``None`` when it is absent."""
  for token in flags.split():
    if token.lstrip("-").startswith(YNN_OPTION + "="):
      return token.split("=", 1)[1]
  return None


def _safe(setting: str | None) -> bool:
  if setting is None:  # XLA's default turns every fusion kind on
    return False
  return not any(kind in setting.split(",") for kind in UNSAFE_YNN_KINDS)


def trim_heap() -> bool:
  """Returns the free pages of glibc's heap to the system (item 3 above).

  Returns whether it could (False off glibc). Cheap next to a compile: call it after one.
  """
  if not sys.platform.startswith("linux"):
    return False
  import ctypes

  try:
    # The process's own symbols include its C library's: no library search (which
    # ctypes.util.find_library does by running ldconfig).
    ctypes.CDLL(None).malloc_trim(0)
    return True
  except (OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim)
    return False


def configure() -> None:
  """Applies the settings above (idempotent); records whether the backend is safe."""
  global SAFE
  flags = os.environ.get("XLA_FLAGS", "")
  setting = _ynn_setting(flags)
  if setting is None and not _backend_started():
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()
    setting = ""
  SAFE = _safe(setting)
  if not SAFE:
    warnings.warn(
      "XLA's CPU YNNPACK elementwise/reduction fusions are on (JAX ran a computation "
      "before credit was imported, or XLA_FLAGS asks for them); they miscompile vmapped "
      f"float32 programs in jaxlib 0.10.2. Import credit first, or set XLA_FLAGS={YNN_FLAG}.",
      RuntimeWarning,
      stacklevel=3,
    )
  import jax

  jax.config.update("jax_use_simplified_jaxpr_constants", True)


def check() -> None:
  """Raises when a CPU backend runs with the fusions that miscompile vmapped seeds.

  Raises:
    RuntimeError: naming the cause and the fix (restart, import credit first).
  """
  if SAFE:
    return
  import jax

  if jax.default_backend() != "cpu":
    return
  raise RuntimeError(
    "XLA's CPU backend was started with YNNPACK elementwise/reduction fusions, which "
    "silently mix up vmapped seeds in jaxlib 0.10.2 (see credit/runtime.py). Restart "
    "Python and either import credit before running any JAX computation, or set "
    f"XLA_FLAGS={YNN_FLAG}."
  )
