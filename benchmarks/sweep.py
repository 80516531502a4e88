"""Sweep throughput with the seed axis sharded over 1, 2 and 4 devices (run by hand; prints JSON).

  python benchmarks/sweep.py                     # throughput on 1, 2, 4 forced host devices
  python benchmarks/sweep.py --devices=1,8 --seeds=16
  python benchmarks/sweep.py --full              # also the whole paper_seq_mnist sweep
  python benchmarks/sweep.py --full --rules=bptt,three_factor_autodiff --workdir=/tmp/paper

Throughput: for each device count K, a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` (the host device count
is fixed when XLA starts) jits one fixed small cell with
:func:`credit.sweeps.sharding.compile_sharded` (seq-MNIST on synthetic data,
BPTT, N = 64, batch 64, ``--seeds`` seeds, no probes), compiles and warms up a
``--chunk``-step chunk, then times ``--reps`` chunks. It reports seed-steps per
second (seeds x steps / wall time) and the compile time. On a CPU, K forced
devices share the same cores, so this measures the sharding overhead rather
than a speed-up; on K accelerators it measures the scaling.

``--full`` runs ``configs/sweeps/paper_seq_mnist.py`` (real MNIST, BPTT 10,000
steps, the three-factor rules 16,000, 5 seeds, lambda_max every 250 / 400
steps) with :func:`credit.sweeps.run_sweep` on all visible devices, and
reports its wall time and each cell's (compilation included).
"""

# ruff: noqa: I001  (credit must be imported before jax: it sets XLA flags)
from __future__ import annotations

import credit  # noqa: F401
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # configs/ when run as a script


def _worker(args) -> dict:
  """Times the fixed cell on every visible device (runs inside the subprocess)."""
  import jax

  from configs.seq_mnist import get_config
  from credit.sweeps import sharding
  from credit.training.train import make_trainer

  config = get_config("smoke")
  config.model.n_hidden = 64
  config.batch_size = 64
  config.num_seeds = args.seeds
  config.num_steps = args.chunk
  config.eval_every = args.chunk
  trainer = make_trainer(config)
  mesh = sharding.make_mesh()
  t0 = time.perf_counter()
  fns = sharding.compile_sharded(trainer, config, mesh)
  state = jax.block_until_ready(fns.init())
  state = jax.block_until_ready(fns.run_chunk(state, args.chunk))  # compiles
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(args.reps):
    t0 = time.perf_counter()
    state = jax.block_until_ready(fns.run_chunk(state, args.chunk))
    times.append(time.perf_counter() - t0)
  best, total = min(times), sum(times)
  return {
    "devices": mesh.size,
    "seeds": args.seeds,
    "padded_seeds": fns.padded,
    "compile_and_first_chunk_s": round(compile_s, 3),
    "seed_steps_per_s": round(args.seeds * args.chunk * args.reps / total, 1),
    "seed_steps_per_s_best_chunk": round(args.seeds * args.chunk / best, 1),
    "steps_per_s": round(args.chunk * args.reps / total, 2),
  }


def _throughput(args) -> list[dict]:
  rows = []
  for k in args.devices:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={k}"
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [
      sys.executable,
      os.path.abspath(__file__),
      "--worker",
      f"--seeds={args.seeds}",
      f"--chunk={args.chunk}",
      f"--reps={args.reps}",
    ]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode:
      raise RuntimeError(f"worker with {k} devices failed:\n{out.stderr[-3000:]}")
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
  return rows


def _full(args) -> dict:
  from configs.sweeps import paper_seq_mnist
  from credit.sweeps import run_sweep
  from credit.sweeps.runner import quiet_orbax_logs

  import jax

  sweep = paper_seq_mnist.get_config()
  if args.rules:
    sweep.rules = tuple(args.rules)
    for rule in list(sweep.rule_overrides):
      if rule not in sweep.rules:
        del sweep.rule_overrides[rule]
  workdir = args.workdir or tempfile.mkdtemp(prefix="paper_seq_mnist_")
  quiet_orbax_logs()
  result = run_sweep(sweep, workdir, stream=sys.stderr)
  cells = {}
  for cell in result.cells:
    with open(os.path.join(workdir, "cells", cell.id, "run_info.json")) as f:
      info = json.load(f)
    cells[cell.id] = {
      "wall_time_s": round(info["wall_time_s"], 1),
      "num_steps": cell.config.num_steps,
      "seeds": cell.config.num_seeds,
      "resumed_from_step": info["resumed_from_step"],
    }
  return {
    "workdir": workdir,
    "devices": jax.device_count(),
    "rules": list(sweep.rules),
    "wall_time_s": round(result.wall_time_s, 1),
    "wall_time_min": round(result.wall_time_s / 60, 2),
    "cells": cells,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--devices",
    type=lambda s: [int(x) for x in s.split(",")],
    default=[1, 2, 4],
    help="forced host device counts",
  )
  parser.add_argument("--seeds", type=int, default=8, help="seeds of the fixed cell")
  parser.add_argument("--chunk", type=int, default=50, help="steps per timed chunk")
  parser.add_argument("--reps", type=int, default=4, help="timed chunks")
  parser.add_argument("--full", action="store_true", help="also run the paper_seq_mnist sweep")
  parser.add_argument(
    "--rules", type=lambda s: s.split(","), default=None, help="with --full: only these rules"
  )
  parser.add_argument("--workdir", default=None, help="with --full: the sweep's workdir")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(_worker(args)))
    return
  import jax

  report = {
    "benchmark": "sweep",
    "machine": {
      "cpus": os.cpu_count(),
      "platform": platform.platform(),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
    },
    "cell": {
      "task": "seq_mnist (synthetic)",
      "rule": "bptt",
      "n_hidden": 64,
      "batch_size": 64,
      "seeds": args.seeds,
      "chunk_steps": args.chunk,
      "timed_chunks": args.reps,
    },
    "throughput": _throughput(args),
  }
  if args.full:
    report["full_sweep"] = _full(args)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
