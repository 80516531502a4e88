"""How many Lanczos steps lambda_max needs on seq-MNIST networks, per stopping tolerance.

  python benchmarks/lanczos_tolerance.py                    # 4 seeds, steps 0-6000 of both rules
  python benchmarks/lanczos_tolerance.py --seeds=2 --checkpoints=0,1000

The seq-MNIST reproduction (``configs/reproduce/seq_mnist.py``) stops its Lanczos
runs at a residual tolerance instead of always taking ``lanczos_steps`` steps
(``curvature.lanczos_tol``). This measures what that costs in accuracy. For each
rule of the protocol (BPTT and e-prop, SGD 1e-2, batch 256), ``--seeds`` seeds
are trained and, at each of ``--checkpoints``, one long Lanczos run
(``--reference_steps``) on the probe's operator (the Hessian of the exact loss
w.r.t. the free synapses of W_rec, on the first 256 validation images, float32)
gives the tridiagonal of every shorter run: the first ``m`` steps of a run are
those of an ``m``-step run from the same start. For each tolerance and ``top_k``
the stopping step is the first ``m`` at which the ``top_k`` residual bounds are
within ``tol * |theta_1|`` (:func:`credit.curvature.lanczos.converged_top_k`),
and the error of its Ritz values is measured against the long run and against
the fixed 20-step run the reproduction took before. The adaptive loop itself
(``lanczos_top_k(..., tol=...)``) is run at ``--check_tol`` to confirm the
simulated step counts. Prints one JSON object.
"""

# ruff: noqa: I001  (credit must be imported before jax: it sets XLA flags)
from __future__ import annotations

import credit  # noqa: F401
import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from credit.curvature.lanczos import lanczos_top_k, lanczos_tridiag
from credit.curvature.hvp import make_hvp
from credit.curvature.tracking import curvature_batch, parameter_mask, random_start
from credit.sweeps.cells import expand
from credit.training.run import compile_seeds, seed_keys
from credit.training.train import make_trainer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs.reproduce.seq_mnist import get_config  # noqa: E402

SUBSET = ("w_rec",)


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
  return [float(x) for x in text.split(",") if x]


def ritz(alphas: np.ndarray, betas: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
  """Ritz values (descending) and the last row of the eigenvectors of the m-step ``T``."""
  t = np.diag(alphas[:m]) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
  theta, s = np.linalg.eigh(t)
  return theta[::-1], s[-1, ::-1]


def stopping_step(alphas, betas, residuals, k: int, tol: float, most: int) -> int:
  """The first ``m >= k`` whose ``k`` residual bounds are within ``tol * |theta_1|``."""
  for m in range(k, most + 1):
    theta, last = ritz(alphas, betas, m)
    if np.all(np.abs(residuals[m - 1] * last[:k]) <= tol * abs(theta[0])):
      return m
  return most


def tridiagonals(cell, args) -> tuple[list[dict], list[dict]]:
  """Long Lanczos runs at each checkpoint and seed, and the adaptive loop at ``check_tol``."""
  config = cell.config.copy_and_resolve_references()
  config.curvature.every = config.alignment.every = config.theory.every = 0
  config.num_seeds = args.seeds
  trainer = make_trainer(config)
  fns = compile_seeds(trainer)
  state = fns.init(seed_keys(config))
  batch = curvature_batch(trainer.task, 256)

  def operator(params):
    mask = parameter_mask(params, trainer.spec, SUBSET)
    return make_hvp(trainer.total_loss, params, batch, SUBSET, 0, mask, True), mask

  def long_run(params, key):
    hvp, mask = operator(params)
    v0 = random_start(key, {"w_rec": params["w_rec"]}, mask)
    res = lanczos_tridiag(hvp, v0, args.reference_steps, mask=mask)
    return res.alphas, res.betas, res.residual

  def adaptive_run(params, key, k):
    hvp, mask = operator(params)
    v0 = random_start(key, {"w_rec": params["w_rec"]}, mask)
    top = lanczos_top_k(hvp, v0, 20, k, mask=mask, tol=args.check_tol)
    return top.steps, top.eigenvalues[0]

  long_run = jax.jit(jax.vmap(long_run))
  adaptive = {k: jax.jit(jax.vmap(lambda p, key, k=k: adaptive_run(p, key, k))) for k in (1, 3)}
  rows, checks, done = [], [], 0
  for target in args.checkpoints:
    while done < target:
      chunk = min(target - done, config.eval_every)
      state = fns.run_chunk(state, chunk)
      done += chunk
    keys = jax.random.split(jax.random.key(1000 + target), args.seeds)
    alphas, betas, residual = jax.device_get(long_run(state.params, keys))
    for i in range(args.seeds):
      residuals = np.append(betas[i], residual[i])
      rows.append(dict(rule=cell.rule, step=target, seed=i, alphas=alphas[i], residuals=residuals))
    for k, fn in adaptive.items():
      steps, lam = jax.device_get(fn(state.params, keys))
      for i in range(args.seeds):
        checks.append(dict(rule=cell.rule, step=target, seed=i, k=k, steps=int(steps[i])))
  return rows, checks


def summarize(rows, tols, most: int) -> dict:
  out = {}
  for k in (1, 3):
    for tol in tols:
      steps, err_long, err_20 = [], [], []
      for r in rows:
        a, b = r["alphas"], r["residuals"]
        m = stopping_step(a, b, b, k, tol, most)
        theta = ritz(a, b, m)[0][:k]
        long = ritz(a, b, len(a))[0][:k]
        twenty = ritz(a, b, 20)[0][:k]
        steps.append(m)
        err_long.append(np.max(np.abs(theta - long)) / abs(long[0]))
        err_20.append(np.max(np.abs(theta - twenty)) / abs(long[0]))
      out[f"top_k={k},tol={tol:g}"] = {
        "steps_mean": round(float(np.mean(steps)), 2),
        "steps_max": int(np.max(steps)),
        "max_rel_error_vs_long_run": float(f"{max(err_long):.3g}"),
        "max_rel_error_vs_20_steps": float(f"{max(err_20):.3g}"),
      }
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--checkpoints", type=_ints, default=[0, 1000, 3000, 6000])
  parser.add_argument("--reference_steps", type=int, default=60)
  parser.add_argument("--tols", type=_floats, default=[1e-2, 1e-3, 3e-4, 1e-4, 1e-5])
  parser.add_argument("--check_tol", type=float, default=1e-4)
  args = parser.parse_args()
  start = time.perf_counter()
  rows, checks = [], []
  for cell in expand(get_config().tasks.seq_mnist):
    r, c = tridiagonals(cell, args)
    rows += r
    checks += c
  simulated = {
    (r["rule"], r["step"], r["seed"], k): stopping_step(
      r["alphas"], r["residuals"], r["residuals"], k, args.check_tol, 20
    )
    for r in rows
    for k in (1, 3)
  }
  agree = sum(simulated[(c["rule"], c["step"], c["seed"], c["k"])] == c["steps"] for c in checks)
  result = {
    "device": str(jax.devices()[0]),
    "networks": len(rows),
    "rules": sorted({r["rule"] for r in rows}),
    "checkpoints": args.checkpoints,
    "reference_steps": args.reference_steps,
    "by_tolerance": summarize(rows, args.tols, args.reference_steps),
    "adaptive_loop_check": {
      "tol": args.check_tol,
      "runs": len(checks),
      "steps_equal_to_simulated": agree,
      "steps_mean": {
        k: round(float(np.mean([c["steps"] for c in checks if c["k"] == k])), 2) for k in (1, 3)
      },
    },
    "wall_s": round(time.perf_counter() - start, 1),
  }
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
