"""Lanczos vs the reference power iteration for lambda_max on trained seq-MNIST networks.

  python benchmarks/curvature.py                       # defaults: 3 seeds x 2000 steps
  python benchmarks/curvature.py --num_steps=1000 --checkpoints=500,1000 --overhead_steps=500

Prints one JSON object. Everything runs on the operator of the reference
(BiolHessRNN): the Hessian of the exact loss (CE at the last step + L2)
w.r.t. the free synapses of W_rec, on the first 256 validation images, in the
run's float32.

1. Trains ``num_seeds`` seeds of ``configs/seq_mnist.py`` (real MNIST, SGD
   1e-2) and keeps the parameters at ``checkpoints``.
2. At each checkpoint and seed: power iteration with the reference protocol
   (v0 ~ N(0, I), stop at |d lambda| <= 1e-6 or 500 HVPs; gives |lambda|), and
   Lanczos with each of ``lanczos_steps`` (signed top eigenvalue), from the same
   start vector; a long Lanczos (``reference_steps``, top and bottom Ritz
   values) as the converged value; matfree's ``tridiag_sym(reortho="full")``
   with each of ``lanczos_steps`` from the same start (the library our Krylov
   loop is checked against, credit/curvature/krylov.py). Relative differences,
   HVP counts, wall times.
3. Cost of one HVP (``jax.jvp`` of ``jax.grad``, and ``jax.linearize`` with the
   primal shared) over one gradient on the same batch (medians of interleaved
   single calls, in wall and in CPU time).
4. The top Ritz pair of the final checkpoint against float64 (``top_pair_check``).
5. Overhead of the curvature track in a training run: the same run with
   ``curvature.every=0`` and ``curvature.every=250`` (``overhead_lanczos_steps``);
   whole runs including compilation, and the steady state of a long run (one
   probe per chunk of training plus evaluation). CPU time of this process is
   the robust measure on a shared machine; wall times are reported too.
"""

# ruff: noqa: I001  (credit must be imported before jax: it sets XLA flags)
from __future__ import annotations

import credit  # noqa: F401
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from matfree import decomp

from configs.seq_mnist import get_config
from credit import curvature as cv
from credit.curvature.tracking import curvature_batch, parameter_mask
from credit.models import rnn
from credit.training.run import compile_seeds, seed_keys
from credit.training.train import make_trainer

SUBSET = ("w_rec",)


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def timed(fn, *args):
  """``(result, seconds)`` of one blocking call."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t0


def train_checkpoints(config, checkpoints: list[int], chunk: int):
  """Parameters (stacked over seeds) at each checkpoint, and the train time per step."""
  trainer = make_trainer(config)
  fns = compile_seeds(trainer)
  state = fns.init(seed_keys(config))
  saved, step, times = {}, 0, []
  while step < max(checkpoints):
    state, dt = timed(lambda s: fns.run_chunk(s, chunk), state)
    times.append(dt)
    step += chunk
    if step in checkpoints:
      saved[step] = jax.device_get(state.params)
  per_step = statistics.median(times[1:] if len(times) > 1 else times) / chunk
  return trainer, saved, per_step


def make_operator(trainer, batch):
  spec, loss = trainer.spec, trainer.total_loss

  def operator(params, linearize=False):
    mask = parameter_mask(params, spec, SUBSET)
    hvp = cv.make_hvp(loss, params, batch, SUBSET, mask=mask, linearize=linearize)
    return hvp, mask

  def start_vector(params, key):
    mask = parameter_mask(params, spec, SUBSET)
    return {"w_rec": mask["w_rec"] * jax.random.normal(key, mask["w_rec"].shape)}

  return operator, start_vector


def compare_estimators(trainer, saved, batch, lanczos_steps, reference_steps, num_seeds):
  operator, start_vector = make_operator(trainer, batch)

  def power(params, key):
    hvp, _ = operator(params, linearize=True)
    return cv.power_iteration(hvp, start_vector(params, key))

  def lanczos(params, key, m):
    hvp, mask = operator(params, linearize=True)
    return cv.lanczos_top_k(hvp, start_vector(params, key), m, 1, mask=mask).eigenvalues[0]

  def matfree_lanczos(params, key, m):
    hvp, _ = operator(params, linearize=True)
    res = decomp.tridiag_sym(m, reortho="full")(hvp, start_vector(params, key))
    return jnp.linalg.eigvalsh(res.J_small)[-1]

  def reference(params, key):
    hvp, mask = operator(params, linearize=True)
    v0 = start_vector(params, jax.random.fold_in(key, 1))
    res = cv.lanczos_tridiag(hvp, v0, reference_steps, mask=mask)
    theta = jnp.linalg.eigvalsh(cv.tridiagonal(res.alphas, res.betas))
    return theta[-1], theta[0]

  first = jax.tree.map(lambda x: jnp.asarray(x[0]), next(iter(saved.values())))
  key0 = jax.random.key(0)
  # Compiled ahead of time, so that the timings below exclude compilation.
  power_fn = jax.jit(power).lower(first, key0).compile()
  lanczos_fns = {
    m: jax.jit(lambda p, k, m=m: lanczos(p, k, m)).lower(first, key0).compile()
    for m in lanczos_steps
  }
  matfree_fns = {
    m: jax.jit(lambda p, k, m=m: matfree_lanczos(p, k, m)).lower(first, key0).compile()
    for m in lanczos_steps
  }
  reference_fn = jax.jit(reference)
  rows = []
  for step, stacked in sorted(saved.items()):
    for seed in range(num_seeds):
      params = jax.tree.map(lambda x, s=seed: jnp.asarray(x[s]), stacked)
      key = jax.random.key(1000 * step + seed)
      pw, t_power = timed(power_fn, params, key)
      (ref_max, ref_min) = reference_fn(params, key)
      row = {
        "step": step,
        "seed": seed,
        "power_magnitude": float(pw.magnitude),
        "power_rayleigh": float(pw.rayleigh),
        "power_hvps": int(pw.num_matvecs),
        "power_time_s": t_power,
        "reference_lambda_max": float(ref_max),
        "reference_lambda_min": float(ref_min),
        "lanczos": {},
      }
      for m, fn in lanczos_fns.items():
        lam, t = timed(fn, params, key)
        lam_mf, t_mf = timed(matfree_fns[m], params, key)
        row["lanczos"][m] = {
          "lambda_max": float(lam),
          "time_s": t,
          "matfree_time_s": t_mf,
          "rel_diff_matfree": abs(float(lam) - float(lam_mf)) / abs(float(lam_mf)),
          "rel_diff_power": abs(float(lam) - row["power_magnitude"]) / row["power_magnitude"],
          "rel_diff_reference": abs(float(lam) - float(ref_max)) / abs(float(ref_max)),
        }
      rows.append(row)
      print(json.dumps({k: v for k, v in row.items() if k != "lanczos"}), flush=True)
  return rows


def hvp_cost(trainer, params, batch, repeats: int = 15):
  """Median wall and CPU seconds per call of a gradient and of an HVP, timed interleaved.

  ``hvp_linearize`` applies a linearization computed beforehand (what every
  product after the first costs when many share the point);
  ``linearize_setup`` is the one-off ``jax.linearize`` call.
  """
  operator, start_vector = make_operator(trainer, batch)
  loss = trainer.total_loss
  v = start_vector(params, jax.random.key(0))
  grad_sub = cv.make_grad(loss, params, batch, SUBSET)
  point = cv.select(params, SUBSET)
  linearize = jax.jit(lambda p: jax.linearize(grad_sub, p)[1])
  lin = linearize(point)
  fns = {
    "grad_all_params": (jax.jit(jax.grad(loss)), (params, batch)),
    "grad_w_rec": (jax.jit(grad_sub), (point,)),
    "hvp_jvp": (jax.jit(lambda p, v: operator(p)[0](v)), (params, v)),
    "hvp_linearize": (jax.jit(lambda f, v: f(v)), (lin, v)),
    "linearize_setup": (linearize, (point,)),
  }
  for fn, args in fns.values():
    jax.block_until_ready(fn(*args))
  wall = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  for _ in range(repeats):
    for name, (fn, args) in fns.items():
      _, dt, dc = cpu_timed(fn, *args)
      wall[name].append(dt)
      cpu[name].append(dc)
  out = {}
  for kind, times in (("wall", wall), ("cpu", cpu)):
    med = {name: statistics.median(t) for name, t in times.items()}
    out.update({f"{name}_{kind}_s": t for name, t in med.items()})
    for name in ("hvp_jvp", "hvp_linearize"):
      out[f"{name}_over_grad_w_rec_{kind}"] = med[name] / med["grad_w_rec"]
      out[f"{name}_over_grad_all_params_{kind}"] = med[name] / med["grad_all_params"]
  return out


def check_top_pair(
  trainer, params, batch, key, num_steps: int, eps: tuple[float, ...] = (1e-6, 1e-4, 1e-2)
):
  """The top Ritz pair ``(lambda, v)`` against float64 computations at the same point.

  ``rayleigh_float64`` is ``v^T H v`` with the HVP in float64 (checks the
  float32 operator). The differences ``(L(w + e v) - 2 L(w) + L(w - e v)) / e^2``
  and ``<g(w + e v) - g(w - e v), v> / 2e`` equal ``v^T H v`` up to O(e^2) only
  while the segment crosses no ReLU kink: a crossing adds a gradient jump
  divided by ``e``. So they show on what scale the local Hessian describes the
  loss of this piecewise-smooth network, rather than check the operator.
  """
  operator, start_vector = make_operator(trainer, batch)
  hvp, mask = operator(params, linearize=True)
  v0 = start_vector(params, key)
  top = cv.lanczos_top_k(hvp, v0, num_steps, 1, return_vectors=True, mask=mask)
  v = np.asarray(top.eigenvectors["w_rec"][0], np.float64)
  lam = float(top.eigenvalues[0])
  out = {"lambda_max": lam, "eps": list(eps), "second_difference": [], "gradient_difference": []}
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    b64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), batch)
    mask = parameter_mask(p64, trainer.spec, SUBSET)
    hvp64 = jax.jit(cv.make_hvp(trainer.total_loss, p64, b64, SUBSET, mask=mask))
    v64 = jnp.asarray(v)
    out["rayleigh_float64"] = float(jnp.vdot(v64, hvp64({"w_rec": v64})["w_rec"]))
    loss = jax.jit(lambda w: trainer.total_loss({**p64, "w_rec": w}, b64))
    grad = jax.jit(jax.grad(lambda w: trainer.total_loss({**p64, "w_rec": w}, b64)))
    w = p64["w_rec"]
    for e in eps:
      second = (float(loss(w + e * v)) - 2 * float(loss(w)) + float(loss(w - e * v))) / e**2
      out["second_difference"].append(second)
      out["gradient_difference"].append(
        float(jnp.sum((grad(w + e * v) - grad(w - e * v)) * v)) / (2 * e)
      )
    # Pre-activations closer to the kink than the largest change along the segment.
    u = np.abs(np.asarray(rnn.forward(p64, trainer.spec, b64.inputs).u))
    out["fraction_preactivations_below"] = {str(e): float(np.mean(u < e)) for e in eps}
  out["rel_diff_float64"] = abs(out["rayleigh_float64"] - lam) / abs(lam)
  return out


def cpu_timed(fn, *args):
  """``(result, wall seconds, CPU seconds of this process)`` of one blocking call.

  CPU time (all threads) is what the call costs; on a shared machine it varies
  far less than wall time, which also counts waiting for other processes.
  """
  c0, t0 = time.process_time(), time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t0, time.process_time() - c0


def run_timed(config):
  """Wall and CPU time of a training run, and its compiled pieces for further timing."""
  c_start, t_start = time.process_time(), time.perf_counter()
  trainer = make_trainer(config)
  fns = compile_seeds(trainer)
  state = fns.init(seed_keys(config))
  eval_cpu, previous = [], 0
  for step in trainer.eval_steps:
    if step > previous:
      state = fns.run_chunk(state, step - previous)
      previous = step
    metrics, _, dc = cpu_timed(fns.evaluate, state, jnp.asarray(step, jnp.int32))
    eval_cpu.append(dc)
  lam = metrics.get("lambda_max")
  return {
    "wall_s": time.perf_counter() - t_start,
    "cpu_s": time.process_time() - c_start,
    "first_eval_cpu_s": eval_cpu[0],
    "final_lambda_max": None if lam is None else np.asarray(lam).tolist(),
  }, (fns, state)


def overhead(
  base, steps: int, every: int, lanczos_steps: int, projected_steps: int, repeats: int = 3
):
  """Cost of the curvature track: whole runs, and their pieces timed interleaved.

  ``run_overhead_wall`` / ``run_overhead_cpu`` compare two whole runs
  (compilation included). ``steady_overhead_cpu`` is what a long run pays per
  ``every`` steps: the extra CPU time of an evaluation with the probe over one
  chunk of training plus one plain evaluation (medians of interleaved calls;
  ``steady_overhead_wall`` is the same in wall time, noisier on a shared
  machine). ``probe_compile_cpu_s`` is the extra CPU time of the first
  (compiling) evaluation. ``projected_overhead_cpu`` puts these pieces together
  for a run of ``projected_steps`` (the reference protocol: 10,000 steps, so 41
  measurements); a short run pays relatively more for compiling the probe.
  """
  out, pieces = {}, {}
  for label, on in (("without", 0), ("with", every)):
    config = base.copy_and_resolve_references()
    config.num_steps = steps
    config.eval_every = every
    config.curvature.every = on
    config.curvature.lanczos_steps = lanczos_steps
    out[label], pieces[label] = run_timed(config)
  fns, state = pieces["without"]
  step = jnp.asarray(every, jnp.int32)
  wall = {"chunk": [], "without": [], "with": []}
  cpu = {k: [] for k in wall}
  for _ in range(repeats):
    _, dt, dc = cpu_timed(lambda s: fns.run_chunk(s, every), state)
    wall["chunk"].append(dt)
    cpu["chunk"].append(dc)
    for label in ("without", "with"):
      _, dt, dc = cpu_timed(pieces[label][0].evaluate, pieces[label][1], step)
      wall[label].append(dt)
      cpu[label].append(dc)
  for name, times in (("wall", wall), ("cpu", cpu)):
    med = {k: statistics.median(v) for k, v in times.items()}
    out[f"chunk_{name}_s"] = med["chunk"]
    out[f"eval_{name}_s"] = med["without"]
    out[f"probe_{name}_s"] = med["with"] - med["without"]
    out[f"steady_overhead_{name}"] = out[f"probe_{name}_s"] / (med["chunk"] + med["without"])
  w, c = out["without"], out["with"]
  out["run_overhead_wall"] = c["wall_s"] / w["wall_s"] - 1
  out["run_overhead_cpu"] = c["cpu_s"] / w["cpu_s"] - 1
  out["probe_compile_cpu_s"] = c["first_eval_cpu_s"] - w["first_eval_cpu_s"] - out["probe_cpu_s"]
  chunk, ev, probe = out["chunk_cpu_s"], out["eval_cpu_s"], out["probe_cpu_s"]
  fixed = w["cpu_s"] - (steps // every) * chunk - (steps // every + 1) * ev  # compile, data
  n = projected_steps // every
  out["projected_steps"] = projected_steps
  out["projected_overhead_cpu"] = ((n + 1) * probe + out["probe_compile_cpu_s"]) / (
    n * chunk + (n + 1) * ev + fixed
  )
  return out


def summarize(rows, lanczos_steps):
  power_hvps = [r["power_hvps"] for r in rows]
  power_ref = [
    abs(r["power_magnitude"] - r["reference_lambda_max"]) / r["reference_lambda_max"] for r in rows
  ]
  out = {
    "power_hvps_median": statistics.median(power_hvps),
    "power_hvps_range": [min(power_hvps), max(power_hvps)],
    "power_time_s_median": statistics.median(r["power_time_s"] for r in rows),
    "power_rel_diff_reference_median": statistics.median(power_ref),
    "lambda_max_exceeds_abs_lambda_min": all(
      r["reference_lambda_max"] > abs(r["reference_lambda_min"]) for r in rows
    ),
    "lanczos": {},
  }
  for m in lanczos_steps:
    d_pow = [r["lanczos"][m]["rel_diff_power"] for r in rows]
    d_ref = [r["lanczos"][m]["rel_diff_reference"] for r in rows]
    ratio = [m / r["power_hvps"] for r in rows]
    out["lanczos"][m] = {
      "rel_diff_power_median": statistics.median(d_pow),
      "rel_diff_power_max": max(d_pow),
      "rel_diff_reference_median": statistics.median(d_ref),
      "rel_diff_reference_max": max(d_ref),
      "hvps_over_power_median": statistics.median(ratio),
      "time_s_median": statistics.median(r["lanczos"][m]["time_s"] for r in rows),
      "matfree_time_s_median": statistics.median(r["lanczos"][m]["matfree_time_s"] for r in rows),
      "rel_diff_matfree_max": max(r["lanczos"][m]["rel_diff_matfree"] for r in rows),
    }
  # Target: within 1e-3 of power iteration, <= 12 HVPs and <= half its HVPs (medians);
  # the stricter reading asks the accuracy of every seed and checkpoint.
  cheap = [
    m for m in lanczos_steps if m <= 12 and out["lanczos"][m]["hvps_over_power_median"] <= 0.5
  ]
  median_ok = [m for m in cheap if out["lanczos"][m]["rel_diff_power_median"] <= 1e-3]
  all_ok = [m for m in cheap if out["lanczos"][m]["rel_diff_power_max"] <= 1e-3]
  out["smallest_lanczos_steps_meeting_target_median"] = min(median_ok, default=None)
  out["smallest_lanczos_steps_meeting_target_every_case"] = min(all_ok, default=None)
  return out


def plain_hvp(spec, params, batch, reg_l2: float):
  """The HVP a JAX user writes: ``jax.jvp`` of ``jax.grad`` of a ``lax.scan`` loss of W_rec."""
  mask = rnn.recurrent_mask(spec, params["w_rec"].dtype)
  x = jnp.swapaxes(batch.inputs, 0, 1)
  labels = jnp.argmax(batch.targets[:, -1], -1)

  def loss(w):
    drive = x @ params["w_in"].T + params["b"]
    w_t = (w * mask).T
    h, _ = jax.lax.scan(
      lambda h, d: (jax.nn.relu(h @ w_t + d), None),
      jnp.zeros((x.shape[1], spec.n_hidden), x.dtype),
      drive,
    )
    logits = h @ params["w_out"].T + params["b_out"]
    xent = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
    l2 = jnp.sum(w**2) + jnp.sum(params["w_in"] ** 2) + jnp.sum(params["w_out"] ** 2)
    return xent + 0.5 * reg_l2 * l2

  return lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1]


def pyhessian_power(hvp, v0, tol: float = 1e-3, max_iter: int = 100):
  """PyHessian's power iteration: stop at a relative change of the Rayleigh quotient <= tol."""

  def cond(state):
    _, lam, prev, i = state
    return (i < max_iter) & ((i < 2) | (jnp.abs(lam - prev) > tol * jnp.abs(prev) + 1e-6))

  def body(state):
    v, lam, _, i = state
    hv = hvp(v)
    lam_new = jnp.vdot(v, hv)
    return hv / jnp.linalg.norm(hv), lam_new, lam, i + 1

  v0 = v0 / jnp.linalg.norm(v0)
  zero = jnp.zeros((), v0.dtype)
  _, lam, _, count = jax.lax.while_loop(cond, body, (v0, zero, zero, jnp.zeros((), jnp.int32)))
  return lam, count


def hvp_floor(config, repeats: int, train_steps: int) -> dict:
  """credit's curvature HVP against the plain ``jax.jvp(jax.grad)`` one, interleaved, and the
  cost of one lambda_max estimate: credit's probe Lanczos (tolerance) vs PyHessian-style
  power iteration (relative tolerance 1e-3, as PyHessian)."""
  from credit.training.objective import make_total_loss

  trainer = make_trainer(config)
  params = jax.tree.map(lambda a: a[0], compile_seeds(trainer).init(seed_keys(config)).params)
  if train_steps:
    fns = compile_seeds(trainer)
    state = fns.run_chunk(fns.init(seed_keys(config)), train_steps)
    params = jax.tree.map(lambda a: a[0], state.params)
  batch = curvature_batch(trainer.task, config.curvature.batch_size)
  spec = trainer.spec
  mask = parameter_mask(params, spec, SUBSET)
  every_step = make_total_loss(spec, trainer.task._replace(loss_steps=None), config.reg_l2)
  credit_hvp = cv.make_hvp(trainer.total_loss, params, batch, SUBSET, mask=mask)
  before_hvp = cv.make_hvp(every_step, params, batch, SUBSET, mask=mask)
  plain = plain_hvp(spec, params, batch, config.reg_l2)
  v = {"w_rec": mask["w_rec"] * jax.random.normal(jax.random.key(0), mask["w_rec"].shape)}
  fns = {
    "credit": (jax.jit(credit_hvp), (v,)),
    "credit_readout_every_step": (jax.jit(before_hvp), (v,)),
    "plain_jvp_grad": (jax.jit(plain), (params["w_rec"], v["w_rec"])),
  }
  got = {k: f(*a) for k, (f, a) in fns.items()}
  agree = float(
    jnp.max(jnp.abs(got["credit"]["w_rec"] - mask["w_rec"] * got["plain_jvp_grad"]))
    / jnp.max(jnp.abs(got["plain_jvp_grad"]))
  )
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, (f, a) in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f(*a))
      times[k].append(time.perf_counter() - t0)
  ratio_rounds = {
    f"{k}_over_plain": [a / b for a, b in zip(times[k], times["plain_jvp_grad"], strict=True)]
    for k in ("credit", "credit_readout_every_step")
  }

  c = config.curvature
  flat_mask = mask["w_rec"].reshape(-1)

  def flat_hvp(x):
    return credit_hvp({"w_rec": x.reshape(mask["w_rec"].shape)})["w_rec"].reshape(-1)

  v0 = v["w_rec"].reshape(-1)
  lanczos = jax.jit(
    lambda: cv.lanczos_top_k(credit_hvp, v, c.lanczos_steps, c.top_k, mask=mask, tol=c.lanczos_tol)
  )
  power = jax.jit(lambda: pyhessian_power(lambda x: flat_mask * flat_hvp(flat_mask * x), v0))
  lz, (lam_p, n_p) = lanczos(), power()
  est = {"lanczos": [], "power": []}
  for _ in range(max(3, repeats // 3)):
    for name, fn in (("lanczos", lanczos), ("power", power)):
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      est[name].append(time.perf_counter() - t0)
  med = {k: statistics.median(t) for k, t in times.items()}
  return {
    "config": {
      "curvature_batch": int(batch.inputs.shape[0]),
      "trained_steps": train_steps,
      "lanczos_steps_max": c.lanczos_steps,
      "lanczos_tol": c.lanczos_tol,
      "top_k": c.top_k,
    },
    "hvp_ms": {k: round(1e3 * t, 3) for k, t in med.items()},
    "hvp_ratio_over_plain": {
      k: {
        "median": round(statistics.median(r), 3),
        "min": round(min(r), 3),
        "max": round(max(r), 3),
      }
      for k, r in ratio_rounds.items()
    },
    "max_rel_diff_credit_vs_plain": agree,
    "lambda_max": {
      "lanczos": float(lz.eigenvalues[0]),
      "lanczos_hvps": int(lz.steps),
      "power_pyhessian": float(lam_p),
      "power_hvps": int(n_p),
      "lanczos_ms": round(1e3 * statistics.median(est["lanczos"]), 3),
      "power_ms": round(1e3 * statistics.median(est["power"]), 3),
    },
  }


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_seeds", type=int, default=3)
  parser.add_argument("--num_steps", type=int, default=2000)
  parser.add_argument("--chunk", type=int, default=250)
  parser.add_argument("--checkpoints", type=_ints, default=[500, 1000, 2000])
  parser.add_argument("--lanczos_steps", type=_ints, default=[4, 6, 8, 10, 12, 16, 20])
  parser.add_argument("--reference_steps", type=int, default=80)
  parser.add_argument("--overhead_steps", type=int, default=500)
  parser.add_argument(
    "--overhead_lanczos_steps",
    type=int,
    default=10,
    help="Lanczos steps of the timed track (0: the config default)",
  )
  parser.add_argument("--projected_steps", type=int, default=10_000)
  parser.add_argument("--skip_overhead", action="store_true")
  parser.add_argument(
    "--skip_compare", action="store_true", help="only the overhead measurement (5.)"
  )
  parser.add_argument(
    "--hvp_floor",
    action="store_true",
    help="only the HVP against the plain jax.jvp(jax.grad) one, and the cost per lambda_max",
  )
  parser.add_argument("--config", default="headline", choices=("headline", "seq_mnist"))
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()

  if args.hvp_floor:
    from configs import headline

    base = headline.get_config().tasks.seq_mnist if args.config == "headline" else get_config()
    base.num_seeds = 1
    print(json.dumps(hvp_floor(base, args.repeats, args.num_steps), indent=1))
    return
  config = get_config()
  config.num_seeds = args.num_seeds
  config.num_steps = args.num_steps
  result = {"device": str(jax.devices()[0])}
  if not args.skip_compare:
    result.update(compare(config, args))
  if not args.skip_overhead:
    m = args.overhead_lanczos_steps or config.curvature.lanczos_steps
    result["overhead"] = {
      "lanczos_steps": m,
      **overhead(config, args.overhead_steps, 250, m, args.projected_steps),
    }
  print(json.dumps(result, indent=1))


def compare(config, args) -> dict:
  """Parts 1-4: training, estimators at the checkpoints, HVP cost, float64 check."""
  t0 = time.perf_counter()
  trainer, saved, train_step_s = train_checkpoints(config, args.checkpoints, args.chunk)
  train_s = time.perf_counter() - t0
  batch = curvature_batch(trainer.task, config.curvature.batch_size)
  rows = compare_estimators(
    trainer, saved, batch, args.lanczos_steps, args.reference_steps, args.num_seeds
  )
  final = jax.tree.map(lambda x: jnp.asarray(x[0]), saved[max(saved)])
  return {
    "config": {
      "num_seeds": args.num_seeds,
      "num_steps": args.num_steps,
      "checkpoints": sorted(saved),
      "curvature_batch": int(batch.inputs.shape[0]),
      "hessian_dim_free": int(trainer.spec.n_hidden * (trainer.spec.n_hidden - 1)),
      "reference_steps": args.reference_steps,
    },
    "train_s": train_s,
    "train_step_s_all_seeds": train_step_s,
    "summary": summarize(rows, args.lanczos_steps),
    "cost": hvp_cost(trainer, final, batch),
    "top_pair_check": check_top_pair(
      trainer, final, batch, jax.random.key(7), max(args.lanczos_steps)
    ),
    "per_checkpoint": rows,
  }


if __name__ == "__main__":
  main()
