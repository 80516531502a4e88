"""BPTT training-step throughput on seq-MNIST, against this machine's matmul rate.

  python benchmarks/train_step.py                 # step times, GFLOP/s, matmul rate
  python benchmarks/train_step.py --end_to_end    # + the default 5-seed, 10,000-step run

Prints one JSON object. Ratios are measured within one run (shared machines are
noisy): ``bptt_fraction_of_matmul`` is the BPTT step's achieved GFLOP/s over a
float32 2048x2048 matmul's, and ``seeds8_over_seeds1`` the cost of 8 vmapped
seeds relative to one.

FLOPs are counted analytically for the matmuls of one step (the elementwise work
is ignored): forward ``2 B T (N N + N N_in + N N_out)``; the backward pass costs
twice the forward for each matmul (one product for the input cotangent, one for
the weight gradient), so a step is three times the forward.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import credit  # noqa: F401  (before jax: see credit.runtime)
from credit.training.run import compile_seeds, seed_keys, train_and_evaluate
from credit.training.train import make_trainer

import jax
import jax.numpy as jnp

from configs.seq_mnist import get_config


def median_time(fn, *args, repeats: int = 5) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def matmul_gflops(n: int = 2048) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  t = median_time(jax.jit(jnp.matmul), a, b, repeats=10)
  return 2 * n**3 / t / 1e9


def step_flops(batch: int, t: int, n: int, n_in: int, n_out: int) -> float:
  return 3 * 2 * batch * t * (n * n + n * n_in + n * n_out)


def step_time(config, task, num_seeds: int, steps: int) -> float:
  config = config.copy_and_resolve_references()
  config.num_seeds = num_seeds
  trainer = make_trainer(config, task)
  fns = compile_seeds(trainer)
  state = fns.init(seed_keys(config))
  return median_time(lambda s: fns.run_chunk(s, steps), state, repeats=3) / steps


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=50, help="steps per timed chunk")
  parser.add_argument("--end_to_end", action="store_true")
  args = parser.parse_args()

  config = get_config()
  trainer = make_trainer(config)  # loads MNIST once
  task = trainer.task
  n, b = config.model.n_hidden, config.batch_size
  flops = step_flops(b, task.n_steps, n, task.n_in, task.n_out)

  matmul = matmul_gflops()
  t1 = step_time(config, task, 1, args.steps)
  t8 = step_time(config, task, 8, args.steps)
  matmul_after = matmul_gflops()
  result = {
    "device": str(jax.devices()[0]),
    "jax": jax.__version__,
    "config": {"n_hidden": n, "n_steps": task.n_steps, "batch_size": b, "rule": config.rule},
    "matmul_2048_gflops": round((matmul + matmul_after) / 2, 2),
    "matmul_2048_gflops_before_after": [round(matmul, 2), round(matmul_after, 2)],
    "step_flops": flops,
    "bptt_step_ms_seeds1": round(1e3 * t1, 3),
    "bptt_step_ms_seeds8": round(1e3 * t8, 3),
    "bptt_gflops_seeds1": round(flops / t1 / 1e9, 2),
    "bptt_gflops_seeds8": round(8 * flops / t8 / 1e9, 2),
  }
  result["bptt_fraction_of_matmul"] = round(
    result["bptt_gflops_seeds8"] / result["matmul_2048_gflops"], 3
  )
  result["bptt_fraction_of_matmul_seeds1"] = round(
    result["bptt_gflops_seeds1"] / result["matmul_2048_gflops"], 3
  )
  result["seeds8_over_seeds1"] = round(t8 / t1, 3)
  result["targets"] = {
    "fraction_of_matmul>=0.5": result["bptt_fraction_of_matmul"] >= 0.5,
    "seeds8_over_seeds1<=8": result["seeds8_over_seeds1"] <= 8,
  }
  if args.end_to_end:
    t0 = time.perf_counter()
    run = train_and_evaluate(get_config(), None)
    result["end_to_end_default_run_s"] = round(time.perf_counter() - t0, 1)
    result["end_to_end_final_val_acc"] = [round(float(a), 4) for a in run.history["val_acc"][:, -1]]
    result["end_to_end_final_gap_acc"] = [round(float(a), 4) for a in run.history["gap_acc"][:, -1]]
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
