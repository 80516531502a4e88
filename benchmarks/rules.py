"""Per-rule training-step time and memory relative to BPTT (run by hand; prints JSON).

One training step = the forward pass, the rule's gradient of data loss + L2 and,
for rules with a learned state (``kernl``, ``dni``), its update
(:func:`credit.training.objective.loss_grads_and_state`, exactly what training
calls), an SGD update and the projection onto the model's constraints. BPTT
takes its trace form and RTRL ``jax.value_and_grad``, as in training.

Setup: the seq-MNIST network (ReLU, alpha = 1, no autapses, N_in = 28, N_out = 10,
T = 28, batch 256, loss on the last step only, declared as the task's static loss step
as seq-MNIST declares it) at N = 128 and N = 512 by default, random inputs. For each rule:

* ``time_ms`` / ``time_ms_min``: median / minimum wall time of ``--reps``
  steps after a warm-up (``block_until_ready``). Cases are timed round-robin,
  so that a varying machine load affects them alike.
* ``cpu_ms``: median CPU time of the process over the step (all XLA threads).
  With ``--single-thread`` it measures the work done even on a busy machine;
  with several threads it also counts the thread pool's spinning.
* ``temp_mb``: XLA's temp-buffer size of the compiled step
  (``compiled.memory_analysis().temp_size_in_bytes``).
* ``*_vs_bptt``: the same as ratios to BPTT.
* ``step_gflop``, ``achieved_gflops``, ``floor_ms``, ``floor_over_time`` (BPTT, the
  offline e-prop family, UORO, KF-RTRL, R-KF-RTRL): the FLOPs the rule's definition needs
  per step (:func:`step_flops`), the rate achieved, and the *FLOP-limited time*: those
  FLOPs at numpy's 2048^2 float32 GEMM rate, measured in the same run in a process
  without ``OPENBLAS_CORETYPE`` (``numpy_gemm``); ``floor_over_time`` 1 would be that
  rate.

e-prop-family rules run in both modes (``fast``: offline backward filter, the
training default; ``online``: traces carried forward in time). RTRL is skipped
unless ``--rtrl`` (N = 128 needs ~2.6 GB and ~2 TFLOP per step; N = 512
exceeds the size guard).

Spiking rows (``spiking/<rule>``, :mod:`credit.rules.spiking`): a LIF network
(half ALIF units, triangle pseudo-derivative, leaky readout, ``init_gain = 5``)
at the same N, T and batch on the same inputs (as currents), trained by each
spiking rule as ``model.kind = "lif"`` training does (offline forms);
``time_vs_bptt`` is then the step time relative to **rate** BPTT.
``--no-spiking`` leaves them out.

The RTRL approximations (``uoro``, ``kf_rtrl``, ``r_kf_rtrl``, ``snap2``) also
report ``gflop_per_step``: the leading-order cost of their influence update
(per example and time step, rules.md section 2, counting a multiply-add as 2
FLOPs) times batch and ``T``. A case whose estimate exceeds ``--max-gflop`` (the
sizes where it is impractical) is listed as skipped with that estimate rather
than timed; ``snap2`` (RTRL's cost on a dense ``W_rec``) is measured when RTRL is
(``--rtrl``, within the size guard).

  python benchmarks/rules.py [--sizes 128,512] [--reps 15] [--rtrl] [--only eprop/fast,...]
                             [--single-thread] [--max-gflop 200] [--no-spiking]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

if "--single-thread" in sys.argv:  # must reach XLA before its CPU backend starts
  single = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {single}".strip()

import credit  # noqa: F401  (first: sets XLA flags and JAX options before jax is imported)
from credit import rules
from credit.models import lif, network, rnn
from credit.rules import rtrl
from credit.tasks.base import Batch, Task
from credit.training.objective import loss_grads_and_state

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

T, N_IN, N_OUT, BATCH, REG_L2, LR = 28, 28, 10, 256, 1e-2, 1e-2
# The loss sits on the last step, declared as seq-MNIST declares it (Task.loss_steps): the
# rules then take the static-step paths that training takes on seq-MNIST.
LOSS_STEPS = (T - 1,)


def make_task(batch: int) -> tuple[Task, Batch]:
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.uniform(size=(batch, T, N_IN)), jnp.float32)
  labels = rng.integers(0, N_OUT, batch)
  mask = jnp.zeros((batch, T), jnp.float32).at[:, -1].set(1.0)
  targets = jnp.broadcast_to(
    jnp.asarray(np.eye(N_OUT)[labels], jnp.float32)[:, None], (batch, T, N_OUT)
  )
  task = Task(
    name="seq_mnist_like",
    n_in=N_IN,
    n_out=N_OUT,
    n_steps=T,
    objective="xent",
    sample_train=None,
    eval_sets={},
    shift="",
    loss_steps=LOSS_STEPS,
  )
  return task, Batch(inputs, targets, mask)


def step_fn(rule: rules.GradientRule, spec: rnn.RNNSpec | lif.LIFSpec, task: Task):
  optimizer = optax.sgd(LR)
  net = network(spec)

  def step(params, opt_state, rule_state, batch, key):
    loss, grads, rule_state = loss_grads_and_state(
      rule, spec, task, REG_L2, params, rule_state, batch, key
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return loss, net.project(optax.apply_updates(params, updates), spec), opt_state, rule_state

  return optimizer, jax.jit(step)


def compile_case(
  rule: rules.GradientRule, spec: rnn.RNNSpec | lif.LIFSpec, task: Task, batch: Batch
):
  """The compiled step, its arguments, its compile time and its memory analysis."""
  net = network(spec)
  params = net.project(net.init_params(jax.random.key(0), spec), spec)
  rule_state = rule.init(jax.random.key(1), params)
  optimizer, step = step_fn(rule, spec, task)
  args = (params, optimizer.init(params), rule_state, batch, jax.random.key(2))
  t0 = time.perf_counter()
  compiled = step.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(*args))  # warm-up
  return compiled, args, compile_s, compiled.memory_analysis()


def measure(cases_: list, spec: rnn.RNNSpec, task: Task, batch: Batch, reps: int) -> dict:
  """Times every case round-robin (fair under a varying machine load).

  A case is ``(label, rule)`` for ``spec``, or ``(label, rule, its own spec)``.
  """
  built = {c[0]: compile_case(c[1], c[2] if len(c) > 2 else spec, task, batch) for c in cases_}
  times = {label: [] for label in built}
  cpu = {label: [] for label in built}
  for _ in range(reps):
    for label, (compiled, args, _, _) in built.items():
      c0, t0 = time.process_time(), time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times[label].append(time.perf_counter() - t0)
      cpu[label].append(time.process_time() - c0)
  rows = {}
  for label, (_, _, compile_s, mem) in built.items():
    rows[label] = {
      "time_ms": 1e3 * statistics.median(times[label]),
      "time_ms_min": 1e3 * min(times[label]),
      "cpu_ms": 1e3 * statistics.median(cpu[label]),
      "temp_mb": mem.temp_size_in_bytes / 2**20 if mem is not None else None,
      "compile_s": compile_s,
    }
  return rows


def influence_flops(name: str, spec: rnn.RNNSpec) -> float:
  """Leading-order FLOPs of a rule's influence update, per example and time step.

  With ``m = N + N_in + 1`` (rules.md section 2; lower-order terms counted roughly):
  UORO ``2 N^2 + 10 N m`` (``J A``, the ``N x m`` updates, norms and gradient),
  KF-RTRL ``2 N^3 + 8 N^2 + 2 N m`` (``W_rec B``), R-KF-RTRL ``2 N^2 m + 14 N m``
  (``W_rec B``), SnAp (stored dense) and RTRL ``2 N^3 m + 6 N^2 m`` (``W_rec M``).
  """
  n, m = spec.n_hidden, spec.n_hidden + spec.n_in + 1
  return {
    "uoro": 2 * n**2 + 10 * n * m,
    "kf_rtrl": 2 * n**3 + 8 * n**2 + 2 * n * m,
    "r_kf_rtrl": 2 * n**2 * m + 14 * n * m,
    "snap2": 2 * n**3 * m + 6 * n**2 * m,
    "rtrl": 2 * n**3 * m + 6 * n**2 * m,
  }[name]


APPROXIMATIONS = ("uoro", "kf_rtrl", "r_kf_rtrl", "snap2")


def step_flops(label: str, spec: rnn.RNNSpec, batch: int) -> float | None:
  """FLOPs a rule's definition needs per training step (multiply-add = 2), leading order.

  Forward ``2 B T (N^2 + N N_in)`` and the readout at the one loss step, plus BPTT's
  backward credit ``2 B T N^2`` and weight gradients ``2 B T N m``; the offline e-prop
  family's contraction ``2 B T N m``; an RTRL approximation's influence update
  (:func:`influence_flops`) at every example and step. ``None`` for the other rules.
  """
  n, m = spec.n_hidden, spec.n_hidden + spec.n_in + 1
  forward = 2 * batch * T * (n * n + n * spec.n_in) + 2 * batch * n * spec.n_out
  name = label.split("/")[0]
  if label == "bptt":
    return forward + 2 * batch * T * n * n + 2 * batch * T * n * m
  if label.endswith("/fast") and name in ("eprop", "eprop_random", "rflo"):
    return forward + 2 * batch * T * n * m
  if name in ("uoro", "kf_rtrl", "r_kf_rtrl"):
    return forward + influence_flops(name, spec) * batch * T
  return None


def numpy_gemm_gflops() -> dict:
  """numpy's float32 GEMM rate at 2048^2, in a process without the OpenBLAS core-type override.

  Some machines set ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` for old OpenBLAS builds;
  they slow a current one, so the FLOP limit is measured without them (its kernel recorded).
  """
  import subprocess

  env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
  here = os.path.dirname(os.path.abspath(__file__))
  cmd = [sys.executable, os.path.join(here, "train_step.py"), "--worker=numpy", "--repeats=3"]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
  got = json.loads(out.strip().splitlines()[-1])
  return {"gflops_2048": got["gflops"]["2048"], "openblas": got["openblas"]}


def approximation_cases(spec: rnn.RNNSpec, batch: int, with_rtrl: bool, max_gflop: float):
  """``(label, rule, gflop)`` for the RTRL approximations practical at this size, and the others."""
  practical, skipped = [], {}
  for name in APPROXIMATIONS:
    gflop = influence_flops(name, spec) * batch * T / 1e9
    if name == "snap2":  # RTRL's cost: measured exactly when RTRL is
      if with_rtrl and rtrl.num_params(spec) <= rules.default_options().rtrl_max_params:
        practical.append((name, rules.make(name, spec, loss_steps=LOSS_STEPS), gflop))
      else:
        skipped[name] = {"gflop_per_step": gflop, "skipped": "needs --rtrl, within rtrl_max_params"}
    elif gflop > max_gflop:
      skipped[name] = {"gflop_per_step": gflop, "skipped": f"above --max-gflop={max_gflop}"}
    else:
      practical.append((name, rules.make(name, spec, loss_steps=LOSS_STEPS), gflop))
  return practical, skipped


def cases(spec: rnn.RNNSpec, with_rtrl: bool):
  """``(label, rule)`` for every benchmarked configuration."""

  def make(name, **options):
    return rules.make(name, spec, ml_collections.ConfigDict(options), LOSS_STEPS)

  out = [("bptt", make("bptt")), ("tbptt(K=10)", make("tbptt", truncation=10))]
  out += [(f"{name}/fast", make(name, online=False)) for name in rules.ONLINE_RULES]
  out += [(f"{name}/online", make(name, online=True)) for name in rules.ONLINE_RULES]
  out.append(("three_factor_autodiff", make("three_factor_autodiff")))
  out += [("modprop", make("modprop")), ("dni", make("dni"))]
  if with_rtrl and rtrl.num_params(spec) <= rules.default_options().rtrl_max_params:
    # RTRL is exact, so training takes value_and_grad; time the influence tensor instead.
    out.append(("rtrl(influence)", make("rtrl")._replace(exact=False, autodiff=False)))
  return out


SPIKING_RULES = ("bptt", "eprop", "eprop_random", "rflo", "mdgl")


def spiking_cases(n: int):
  """``(label, rule, spec)`` of each spiking rule on a LIF/ALIF network of ``n`` units."""
  spec = lif.LIFSpec(N_IN, n, N_OUT, frac_adaptive=0.5, init_gain=5.0)
  return [
    (f"spiking/{name}", rules.make(name, spec, loss_steps=LOSS_STEPS), spec)
    for name in SPIKING_RULES
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="128,512")
  parser.add_argument("--batch", type=int, default=BATCH)
  parser.add_argument("--reps", type=int, default=15)
  parser.add_argument("--rtrl", action="store_true")
  parser.add_argument(
    "--max-gflop",
    type=float,
    default=200.0,
    help="skip RTRL approximations whose influence update costs more per training step",
  )
  parser.add_argument("--only", default="", help="comma-separated case labels (bptt always)")
  parser.add_argument("--no-spiking", action="store_true", help="leave out the spiking rows")
  parser.add_argument(
    "--single-thread",
    action="store_true",
    help="one XLA CPU thread: CPU times then measure the work done even on a busy machine",
  )
  args = parser.parse_args()
  task, batch = make_task(args.batch)
  report = {
    "setup": dict(
      T=T,
      n_in=N_IN,
      n_out=N_OUT,
      batch=args.batch,
      activation="relu",
      alpha=1.0,
      no_autapse=True,
      loss="xent on the last step",
      reps=args.reps,
      step="forward + loss_grads_and_state + SGD update + projection",
    ),
    "device": str(jax.devices()[0]),
    "single_thread": args.single_thread,
    "cpu_count": os.cpu_count(),
    "backend": jax.default_backend(),
    "machine": platform.processor() or platform.machine(),
    "results": {},
  }
  numpy_rate = numpy_gemm_gflops()
  report["numpy_gemm"] = numpy_rate
  for n in (int(s) for s in args.sizes.split(",")):
    spec = rnn.RNNSpec(N_IN, n, N_OUT)
    approx, skipped = approximation_cases(spec, args.batch, args.rtrl, args.max_gflop)
    gflop = {label: g for label, _, g in approx}
    if "rtrl(influence)" in dict(cases(spec, args.rtrl)):
      gflop["rtrl(influence)"] = influence_flops("rtrl", spec) * args.batch * T / 1e9
    candidates = cases(spec, args.rtrl) + [(label, rule) for label, rule, _ in approx]
    if not args.no_spiking:
      candidates += spiking_cases(n)
    selected = [
      c for c in candidates if not args.only or c[0] == "bptt" or c[0] in args.only.split(",")
    ]
    rows = measure(selected, spec, task, batch, args.reps)
    for label, g in gflop.items():
      if label in rows:
        rows[label]["gflop_per_step"] = g
    for label, row in rows.items():
      flops = step_flops(label, spec, args.batch)
      if flops is not None:
        # The FLOP-limited time: the definition's FLOPs at numpy's 2048^2 GEMM rate.
        floor_ms = 1e3 * flops / (numpy_rate["gflops_2048"] * 1e9)
        row["step_gflop"] = flops / 1e9
        row["achieved_gflops"] = flops / 1e9 / (row["time_ms"] / 1e3)
        row["floor_ms"] = floor_ms
        row["floor_over_time"] = floor_ms / row["time_ms"]
    base = rows["bptt"]
    for row in rows.values():
      row["time_vs_bptt"] = row["time_ms"] / base["time_ms"]
      row["time_min_vs_bptt"] = row["time_ms_min"] / base["time_ms_min"]
      row["cpu_vs_bptt"] = row["cpu_ms"] / base["cpu_ms"]
      if row["temp_mb"] is not None and base["temp_mb"]:
        row["temp_vs_bptt"] = row["temp_mb"] / base["temp_mb"]
    if "rtrl(influence)" not in rows:
      rows["rtrl"] = {
        "skipped": "exact rule: trains through value_and_grad, i.e. the bptt row; "
        "its influence tensor is measured only with --rtrl, within "
        "rule_options.rtrl_max_params"
      }
    if not args.only:
      rows.update(skipped)
    else:
      rows.update({k: v for k, v in skipped.items() if k in args.only.split(",")})
    report["results"][f"N={n}"] = rows
    print(json.dumps({f"N={n}": rows}), flush=True)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
