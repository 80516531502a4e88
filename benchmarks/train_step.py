"""Training-step throughput of every rule on seq-MNIST, against BLAS and a PyTorch loop.

  python benchmarks/train_step.py                  # all e-prop-family rules, torch if installed
  python benchmarks/train_step.py --rules=bptt,eprop --compare_ynn
  pip install -e ".[bench]"                        # threadpoolctl (the numpy GEMM worker)
  pip install torch --index-url https://download.pytorch.org/whl/cpu   # PyTorch peers, CPU build

Prints one JSON object. The machines are shared and noisy, so everything is
measured in one process, interleaved (each repeat times every variant once),
and compared as ratios:

* ``step_ms``: per seed-step time of the whole compiled training step
  (batch sampling, the rule's gradient, the SGD update, the divergence check)
  as ``make_trainer`` runs it, for 1 seed and for ``--seeds`` seeds together
  in the config's seed layout (``map`` on CPU); ``vmap`` rows show the
  vectorized layout for comparison;
* ``blas``: numpy float32 GEMM rate at the step's recurrent shape
  (``[B, N] x [N, N]``) and at 2048^2, and XLA's own rate at both;
* ``torch_ms``: the same network in a plain PyTorch eager loop
  (``benchmarks/torch_baseline.py``: BPTT by autograd, the three-factor rule
  by detaching the recurrent input);
* ``ratios``: BPTT's GFLOP/s over the BLAS rate, each rule's step over BPTT's,
  and the PyTorch loop's time over credit's (> 1: credit is faster);
* ``peak_rss_mb``: the process's peak resident memory.

FLOPs are counted for BPTT's matmuls only: forward ``2 B T (N^2 + N N_in + N N_out)``,
and a step is three times the forward (each matmul's backward costs two products).
``--peers`` (issue 27) times credit's BPTT and e-prop against the strongest peers, each
in a process of its own, in rounds that alternate the programs (the machine is shared:
compare within a round): ``benchmarks/jax_peer.py`` (the obvious JAX program: reverse
mode through a ``lax.scan`` forward, optax SGD), the PyTorch eager loop and its
``torch.compile`` form (``benchmarks/torch_baseline.py``, one thread: on the loaded
2-core machine its two threads ran 2-7x slower), at each ``--sizes`` N and
``--seed_counts``; and optionally a second credit tree (``--before=<path>``, e.g. an
export of the commit before a change) in the same rounds. Each round also measures
numpy's GEMM rate at the step's product shapes in a process without
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (some machines set them to work around old
OpenBLAS builds; threadpoolctl's kernel is recorded) and from it the *GEMM limit*: every
matrix product of a BPTT step at numpy's rate at its shape. The JSON holds per round
every time and every ratio (peer time / credit time, > 1: credit is faster), and their
medians and ranges.

``--compare_ynn`` times BPTT and e-prop again in subprocesses with XLA's YNNPACK
fusions off altogether (``--xla_cpu_experimental_ynn_fusion_type=``, credit's
setting) and with the matrix-product fusions alone (``=dot``, the other setting that
avoids the miscompile of :mod:`credit.runtime`), alternating.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

import credit  # noqa: F401  (sets the XLA options first; see credit.runtime)
from credit.training.run import compile_seeds, seed_keys
from credit.training.train import make_trainer

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import torch_baseline  # noqa: E402
from configs.seq_mnist import get_config  # noqa: E402

RULES = "bptt,tbptt,eprop,eprop_random,rflo,mdgl,mdgl_exact,three_factor_autodiff"


def step_flops(batch: int, t: int, n: int, n_in: int, n_out: int) -> float:
  return 3 * 2 * batch * t * (n * n + n * n_in + n * n_out)


def gemm_rates(b: int, n: int, repeats: int) -> dict[str, float]:
  """GFLOP/s of numpy's and XLA's float32 GEMM at ``[b, n] x [n, n]`` and 2048^2."""
  out = {}
  rng = np.random.default_rng(0)
  for label, (m, k, p) in {"step_shape": (b, n, n), "2048": (2048, 2048, 2048)}.items():
    a = rng.standard_normal((m, k), np.float32)
    c = rng.standard_normal((k, p), np.float32)
    reps = 200 if m * k * p < 1e8 else 5
    ja, jc = jnp.asarray(a), jnp.asarray(c)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(ja, jc))
    fns = {"numpy": functools.partial(np.matmul, a, c), "xla": functools.partial(mm, ja, jc)}
    for name, fn in fns.items():
      best = float("inf")
      for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps):
          r = fn()
        jax.block_until_ready(r)
        best = min(best, (time.perf_counter() - t0) / reps)
      out[f"{name}_{label}_gflops"] = round(2 * m * k * p / best / 1e9, 1)
  return out


def time_steps(variants: dict, steps: int, repeats: int) -> dict[str, float]:
  """Per seed-step seconds of each ``name -> (run_chunk, state, seeds)``, interleaved.

  Reports the 25th percentile of the repeats: the machine's noise only ever adds time.
  """
  for run_chunk, state, _ in variants.values():
    jax.block_until_ready(run_chunk(state, steps))  # compiles
  times = {name: [] for name in variants}
  for _ in range(repeats):
    for name, (run_chunk, state, seeds) in variants.items():
      t0 = time.perf_counter()
      jax.block_until_ready(run_chunk(state, steps))
      times[name].append((time.perf_counter() - t0) / steps / seeds)
  return {name: float(np.percentile(t, 25)) for name, t in times.items()}


def torch_step_times(n_hidden: int, batch: int, repeats: int) -> dict[str, float | None]:
  """The PyTorch eager loop's seconds per step, measured in a process of its own."""
  cmd = [sys.executable, torch_baseline.__file__, f"--n_hidden={n_hidden}", f"--batch={batch}"]
  cmd.append(f"--repeats={repeats}")
  return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def build_variants(config, task, rules: list[str], seeds: int, vmap_rules: list[str]):
  variants = {}
  for rule in rules:
    layouts = [(1, "auto"), (seeds, "auto")] + ([(seeds, "vmap")] if rule in vmap_rules else [])
    for num_seeds, layout in layouts:
      c = config.copy_and_resolve_references()
      c.rule, c.num_seeds, c.seed_layout = rule, num_seeds, layout
      if rule.startswith("mdgl"):
        c.model.dale = True  # MDGL's cell types (as the reproduction runs it)
      trainer = make_trainer(c, task)
      fns = compile_seeds(trainer)
      name = f"{rule}_seeds{num_seeds}" + ("_vmap" if layout == "vmap" else "")
      variants[name] = (fns.run_chunk, fns.init(seed_keys(c)), num_seeds)
  return variants


def compare_ynn(args) -> dict:
  """BPTT and e-prop step times with YNNPACK off and with credit's ``dot`` setting."""
  results: dict[str, list] = {"off": [], "dot": []}
  for _ in range(2):
    for label, value in (("off", ""), ("dot", "dot")):
      env = dict(os.environ, XLA_FLAGS=f"--xla_cpu_experimental_ynn_fusion_type={value}")
      cmd = [sys.executable, __file__, "--rules=bptt,eprop", "--no_torch", "--no_blas"]
      cmd += [f"--seeds={args.seeds}", f"--steps={args.steps}", f"--repeats={args.repeats}"]
      cmd += ["--vmap_rules=", f"--data={args.data}"]
      out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
      results[label].append(json.loads(out)["step_ms"])
  return {
    label: {k: round(min(r[k] for r in runs), 3) for k in runs[0]}
    for label, runs in results.items()
  }


def bptt_products(b: int, t: int, n: int, n_in: int, n_out: int) -> list[tuple[int, int, int, int]]:
  """``(count, m, k, p)`` of every ``[m, k] x [k, p]`` product of one BPTT step.

  Forward: the recurrent and input products of every step (``[B, N + N_in] x [N + N_in,
  N]``, as credit computes them, or ``[B, N] x [N, N]`` and ``[B T, N_in] x [N_in, N]``:
  the same FLOPs), the readout; backward: the transposed recurrent product of every
  step, the weight gradients ``[N, B T] x [B T, N]`` and ``[N, B T] x [B T, N_in]``.
  The readout at one loss step (seq-MNIST) and its gradients are left out (< 1%).
  """
  return [
    (t, b, n + n_in, n),  # forward
    (t, b, n, n),  # backward credit
    (1, n, b * t, n),  # grad W_rec
    (1, n, b * t, n_in),  # grad W_in
  ]


def numpy_gemm_worker(b: int, n: int, repeats: int) -> dict:
  """numpy's float32 GFLOP/s at BPTT's product shapes and 2048^2, and the step's limit."""
  import threadpoolctl

  rng = np.random.default_rng(0)
  shapes = {f"{m}x{k}x{p}": (m, k, p) for _, m, k, p in bptt_products(b, 28, n, 28, 10)}
  shapes["2048"] = (2048, 2048, 2048)
  rates = {}
  for label, (m, k, p) in shapes.items():
    a = rng.standard_normal((m, k), np.float32)
    c = rng.standard_normal((k, p), np.float32)
    reps = max(3, int(2e9 / (2 * m * k * p)))
    best = float("inf")
    for threads in (1, None):  # the best of one thread and all: under load threads collapse
      with threadpoolctl.threadpool_limits(threads):
        for _ in range(repeats):
          t0 = time.perf_counter()
          for _ in range(reps):
            np.matmul(a, c)
          best = min(best, (time.perf_counter() - t0) / reps)
    rates[label] = 2 * m * k * p / best / 1e9
  limit = sum(
    cnt * 2 * m * k * p / (rates[f"{m}x{k}x{p}"] * 1e9)
    for cnt, m, k, p in bptt_products(b, 28, n, 28, 10)
  )
  info = threadpoolctl.threadpool_info()
  return {
    "gflops": {k: round(v, 1) for k, v in rates.items()},
    "bptt_gemm_limit_ms": 1e3 * limit,
    "openblas": [{k: i.get(k) for k in ("architecture", "num_threads", "version")} for i in info],
  }


def credit_worker(args) -> dict:
  """Per seed-step seconds of credit's rules at one N, each seed count (median of repeats)."""
  config = get_config()
  config.task_options.source = "synthetic"  # same shapes as MNIST, no download
  config.task_options.synthetic_train = 55_000
  config.model.n_hidden = args.n_hidden
  task = make_trainer(config).task
  out = {}
  for rule in args.rules.split(","):
    for seeds in (int(v) for v in args.seed_counts.split(",")):
      c = config.copy_and_resolve_references()
      c.rule, c.num_seeds = rule, seeds
      fns = compile_seeds(make_trainer(c, task))
      state = fns.init(seed_keys(c))
      jax.block_until_ready(fns.run_chunk(state, args.steps))
      times = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fns.run_chunk(state, args.steps))
        times.append((time.perf_counter() - t0) / args.steps / seeds)
      out[f"{rule}_seeds{seeds}"] = float(np.median(times))
  return out


def _run_json(cmd: list[str], env: dict | None = None) -> dict:
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> dict:
  return {
    "median": round(float(np.median(values)), 3),
    "min": round(float(np.min(values)), 3),
    "max": round(float(np.max(values)), 3),
  }


def peers(args) -> dict:
  """Credit against its peers, interleaved in rounds of separate processes (see above)."""
  here = os.path.abspath(__file__)
  root = os.path.dirname(os.path.dirname(here))
  peer_dir = os.path.dirname(here)
  seed_counts = args.seed_counts
  result = {"sizes": {}, "rounds": args.rounds, "seed_counts": seed_counts}
  for n in (int(v) for v in args.sizes.split(",")):
    steps = max(2, int(round(args.steps * (128 / n) ** 2)))  # about the same work per chunk
    common = [f"--n_hidden={n}", f"--steps={steps}", f"--repeats={args.repeats}"]
    credit_cmd = [sys.executable, here, "--worker=credit", "--rules=bptt,eprop"]
    credit_cmd += [f"--seed_counts={seed_counts}"] + common
    programs = {
      "credit": (credit_cmd, dict(os.environ, PYTHONPATH=root)),
      "jax": (
        [sys.executable, os.path.join(peer_dir, "jax_peer.py"), f"--seeds={seed_counts}"]
        + [f"--layout={args.jax_layout}"]
        + common,
        None,
      ),
      "numpy": (
        [sys.executable, here, "--worker=numpy", f"--n_hidden={n}", "--repeats=3"],
        {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
      ),
    }
    if args.before:
      programs["credit_before"] = (credit_cmd, dict(os.environ, PYTHONPATH=args.before))
    if not args.no_torch:
      torch_cmd = [sys.executable, os.path.join(peer_dir, "torch_baseline.py"), "--compile"]
      torch_cmd += ["--threads=1", f"--n_hidden={n}", f"--steps={max(2, steps // 2)}"]
      torch_cmd += [f"--repeats={args.repeats}"]
      programs["torch"] = (torch_cmd, None)
    rounds = []
    names = list(programs)
    for r in range(args.rounds):
      order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
      got = {}
      for name in order:
        cmd, env = programs[name]
        got[name] = _run_json(cmd, env)
        print(f"N={n} round {r}: {name} done", file=sys.stderr, flush=True)
      rounds.append(got)
    result["sizes"][str(n)] = summarize(rounds, seed_counts, n)
  return result


def summarize(rounds: list[dict], seed_counts: str, n: int) -> dict:
  """Per-round times and ratios (peer / credit) and their median and range."""
  ratios: dict[str, list[float]] = {}

  def add(key, value):
    ratios.setdefault(key, []).append(value)

  for got in rounds:
    cr = got["credit"]
    for s in (int(v) for v in seed_counts.split(",")):
      bptt, eprop = cr[f"bptt_seeds{s}"], cr[f"eprop_seeds{s}"]
      add(f"jax_bptt_over_credit_bptt_seeds{s}", got["jax"][f"bptt_seeds{s}"] / bptt)
      add(
        f"jax_three_factor_over_credit_eprop_seeds{s}", got["jax"][f"three_factor_seeds{s}"] / eprop
      )
      if "torch" in got:
        t = got["torch"]
        add(f"torch_eager_bptt_over_credit_bptt_seeds{s}", t["bptt"] / bptt)
        add(f"torch_compile_bptt_over_credit_bptt_seeds{s}", t["bptt_compile"] / bptt)
        add(f"torch_eager_three_factor_over_credit_eprop_seeds{s}", t["three_factor"] / eprop)
        add(
          f"torch_compile_three_factor_over_credit_eprop_seeds{s}",
          t["three_factor_compile"] / eprop,
        )
      add(f"gemm_limit_over_credit_bptt_seeds{s}", got["numpy"]["bptt_gemm_limit_ms"] / 1e3 / bptt)
      add(f"eprop_over_bptt_seeds{s}", eprop / bptt)
      if "credit_before" in got:
        before = got["credit_before"]
        add(f"credit_before_bptt_over_credit_bptt_seeds{s}", before[f"bptt_seeds{s}"] / bptt)
        add(f"credit_before_eprop_over_credit_eprop_seeds{s}", before[f"eprop_seeds{s}"] / eprop)
        b_bptt = before[f"bptt_seeds{s}"]
        add(f"before_jax_bptt_over_credit_bptt_seeds{s}", got["jax"][f"bptt_seeds{s}"] / b_bptt)
        add(
          f"before_gemm_limit_over_credit_bptt_seeds{s}",
          got["numpy"]["bptt_gemm_limit_ms"] / 1e3 / b_bptt,
        )
        if "torch" in got:
          add(
            f"before_torch_compile_bptt_over_credit_bptt_seeds{s}",
            got["torch"]["bptt_compile"] / b_bptt,
          )
          add(f"before_torch_eager_bptt_over_credit_bptt_seeds{s}", got["torch"]["bptt"] / b_bptt)
  ms = [
    {
      name: (
        {k: round(1e3 * v, 3) for k, v in out.items()}
        if name != "numpy"
        else {**out, "bptt_gemm_limit_ms": round(out["bptt_gemm_limit_ms"], 3)}
      )
      for name, out in got.items()
    }
    for got in rounds
  ]
  flops = step_flops(256, 28, n, 28, 10)
  return {
    "step_gflop_bptt": round(flops / 1e9, 3),
    "rounds_ms": ms,
    "ratios": {k: _spread(v) for k, v in ratios.items()},
    "ratios_per_round": {k: [round(x, 3) for x in v] for k, v in ratios.items()},
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rules", default=RULES)
  parser.add_argument("--vmap_rules", default="bptt,eprop", help="also timed with vmapped seeds")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20, help="steps per timed chunk")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--data", choices=("mnist", "synthetic"), default="mnist")
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--no_blas", action="store_true")
  parser.add_argument("--compare_ynn", action="store_true")
  parser.add_argument("--peers", action="store_true", help="credit against its peers (issue 27)")
  parser.add_argument("--sizes", default="64,128,256,512", help="N for --peers")
  parser.add_argument("--seed_counts", default="1,5,20", help="seed counts for --peers")
  parser.add_argument("--rounds", type=int, default=3, help="rounds for --peers")
  parser.add_argument("--before", default="", help="a second credit tree timed with --peers")
  parser.add_argument("--jax_layout", choices=("vmap", "map"), default="vmap")
  parser.add_argument("--worker", choices=("credit", "numpy"), help=argparse.SUPPRESS)
  parser.add_argument("--n_hidden", type=int, default=128, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == "credit":
    print(json.dumps(credit_worker(args)))
    return
  if args.worker == "numpy":
    print(json.dumps(numpy_gemm_worker(256, args.n_hidden, args.repeats)))
    return
  if args.peers:
    out = {"device": str(jax.devices()[0]), "jax": jax.__version__, **peers(args)}
    print(json.dumps(out, indent=2))
    return

  config = get_config()
  if args.data == "synthetic":
    config.task_options.source = "synthetic"
    config.task_options.synthetic_train = 55_000
  task = make_trainer(config).task
  n, b = config.model.n_hidden, config.batch_size
  flops = step_flops(b, task.n_steps, n, task.n_in, task.n_out)
  rules = [r for r in args.rules.split(",") if r]
  vmap_rules = [r for r in args.vmap_rules.split(",") if r]

  variants = build_variants(config, task, rules, args.seeds, vmap_rules)
  step = time_steps(variants, args.steps, args.repeats)
  result = {
    "device": str(jax.devices()[0]),
    "jax": jax.__version__,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "config": {"n_hidden": n, "n_steps": task.n_steps, "batch_size": b, "seeds": args.seeds},
    "step_gflop_bptt": round(flops / 1e9, 3),
    "step_ms": {k: round(1e3 * v, 3) for k, v in step.items()},
  }
  ratios = {}
  many = f"_seeds{args.seeds}"
  if "bptt" in rules:
    bptt = step["bptt" + many]
    result["bptt_gflops"] = {
      "seeds1": round(flops / step["bptt_seeds1"] / 1e9, 1),
      f"seeds{args.seeds}": round(flops / bptt / 1e9, 1),
    }
    for rule in rules:
      if rule != "bptt":
        ratios[f"{rule}_over_bptt"] = round(step[rule + many] / bptt, 3)
  if not args.no_blas:
    result["blas"] = gemm_rates(b, n, args.repeats)
    if "bptt" in rules:
      for key in ("numpy_step_shape_gflops", "numpy_2048_gflops", "xla_2048_gflops"):
        ratios[f"bptt_over_{key.removesuffix('_gflops')}"] = round(
          result["bptt_gflops"][f"seeds{args.seeds}"] / result["blas"][key], 3
        )
  if not args.no_torch:
    torch_ms = torch_step_times(n, b, args.repeats)
    if torch_ms["bptt"] is None:
      result["torch_ms"] = "torch is not installed (see the module docstring)"
    else:
      result["torch_ms"] = {k: round(1e3 * v, 3) for k, v in torch_ms.items()}
      for credit_rule, torch_rule in (("bptt", "bptt"), ("eprop", "three_factor")):
        if credit_rule in rules:
          ratios[f"torch_{torch_rule}_over_credit_{credit_rule}"] = round(
            torch_ms[torch_rule] / step[credit_rule + many], 3
          )
  if args.compare_ynn:
    result["ynn_fusions_step_ms"] = compare_ynn(args)
  result["ratios"] = ratios
  result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
