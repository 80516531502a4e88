"""credit's process-wide JAX settings hold whatever the import order (credit.runtime)."""

import os
import subprocess
import sys
import textwrap

from credit import runtime

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The float32 seeds-mixing program of credit.runtime, printed as final train losses.
_PROGRAM = """
from credit import tasks
from credit.training.run import seed_keys
from credit.training.train import make_train
from tests.conftest import smoke_config
config = smoke_config(num_steps=20, eval_every=20, num_seeds=4, **{"model.n_hidden": 16})
train = make_train(config, tasks.make("seq_mnist", config.task_options))
_, metrics = jax.jit(jax.vmap(train))(seed_keys(config))
print("LOSSES", [float(x) for x in metrics["train_loss"][:, -1]])
"""


def _run(prelude: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  code = textwrap.dedent(prelude) + _PROGRAM
  return subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )


def _losses(proc: subprocess.CompletedProcess) -> list[float]:
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOSSES")][-1]
  return eval(line.removeprefix("LOSSES"))  # noqa: S307 - our own printed list


def test_import_order_does_not_change_results():
  credit_first = _losses(_run("import credit\nimport jax\n"))
  jax_first = _losses(_run("import jax\nimport credit\n"))
  assert credit_first == jax_first
  assert len(set(credit_first)) == 4  # four distinct seeds, none a copy of another


def test_training_refuses_a_backend_started_with_unsafe_fusions():
  proc = _run("import jax\njax.numpy.ones(1).block_until_ready()\nimport credit\n")
  assert proc.returncode != 0
  assert "RuntimeWarning" in proc.stderr and "import credit before" in proc.stderr


# Blocks freed in the middle of glibc's heap stay resident. Under glibc's defaults, freeing
# one mapped 16 MB block raises the mapping threshold to 16 MB, so the 5 MB blocks below
# come from the heap, between small blocks that stay alive (as XLA's compiler leaves them).
_FRAGMENTS = """
import sys
import numpy as np
import credit
def rss_mb():
  with open("/proc/self/status") as f:
    return next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS"))
big = np.ones(16 << 20, np.uint8)
del big
blocks, alive = [], []
for _ in range(60):
  blocks.append(np.ones(5 << 20, np.uint8))
  alive.append(bytearray(100_000))
before = rss_mb()
del blocks
if sys.argv[1] == "trim":
  credit.runtime.trim_heap()
print("RELEASED", before - rss_mb())
"""


def _released_mb(mode: str) -> float:
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  proc = subprocess.run(
    [sys.executable, "-c", _FRAGMENTS, mode], cwd=REPO, env=env, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  return float(proc.stdout.split("RELEASED")[-1])


@pytest.mark.skipif(not runtime.trim_heap(), reason="glibc's malloc_trim is not available")
def test_freed_large_blocks_return_to_the_system_after_a_trim():
  """credit.runtime item 3: 300 MB freed mid-heap leave the process (glibc keeps them)."""
  assert _released_mb("trim") > 250
  assert _released_mb("plain") < 50  # the case the trim is for, without it (import credit sets
  # no allocator option)
