"""Wall time of the seq-MNIST reference protocol, measured in parts and extrapolated.

  python benchmarks/protocol.py                # BPTT 10k + e-prop 16k steps, 5 seeds, probes on
  python benchmarks/protocol.py --seeds=10     # what the decisive reproduction needs
  python benchmarks/protocol.py --full         # the whole protocol, end to end (about 10 min)
  python benchmarks/protocol.py --full --no_probes  # the same with every probe off
  python benchmarks/protocol.py --seeds=1 --separate-probes  # also: probes without sharing

The protocol is ``configs/reproduce/seq_mnist.py``'s base sweep: BPTT for
10,000 steps (evaluation and lambda_max every 250) and e-prop for 16,000 steps
(every 400), SGD 1e-2, batch 256, the theory probe at every 4th curvature
measurement. For each rule the script compiles the run as the sweep does,
trains ``--warmup_steps`` steps (the probes' Lanczos runs stop at a tolerance,
sooner on untrained networks), then times one training chunk (``eval_every``
steps, all seeds), an evaluation without probes, one with the alignment probe
(e-prop's cosine with BPTT), one with the curvature probe too and one with
every probe, and extrapolates to the protocol's schedule. The JSON says which
figures are measured and which are extrapolated, and splits the time into
training, evaluation and each probe. ``--full`` instead runs
``experiments.reproduce``'s base sweep in a temporary workdir and reports its
wall time and peak memory; ``--full --no_probes`` runs it with every probe off,
for the probes' share of the wall time.
``--separate-probes`` also measures each rule with the curvature and theory
probes built apart (each its own Lanczos run, as before they shared one;
:func:`credit.theory.tracking.make_curvature_and_theory_probe`), in the same
process, under ``separate_probes``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import credit  # noqa: F401  (sets the XLA options first; see credit.runtime)
from credit.sweeps.cells import expand
from credit.training.run import compile_seeds, seed_keys
from credit.training.train import make_trainer

import jax
import jax.numpy as jnp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from configs.reproduce.seq_mnist import get_config  # noqa: E402


def interleaved(fns: dict, state, repeats: int) -> dict[str, float]:
  """Best wall time of each ``name -> fn(state)``, the variants timed in turn ``repeats``
  times after one untimed call each (the machine's noise only ever adds time)."""
  for fn in fns.values():
    jax.block_until_ready(fn(state))
  best = dict.fromkeys(fns, float("inf"))
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(state))
      best[name] = min(best[name], time.perf_counter() - t0)
  return best


def without_probes(config):
  c = config.copy_and_resolve_references()
  c.curvature.every = c.alignment.every = c.theory.every = 0
  return c


def separate_probes(config, task) -> tuple:
  """The config's probes, the curvature and theory probes built apart (no shared Lanczos)."""
  from credit.curvature.tracking import make_curvature_probe
  from credit.theory.tracking import make_theory_probe
  from credit.training.alignment_probe import make_alignment_probe

  t = make_trainer(without_probes(config), task)
  probes = [make_curvature_probe(config, t.spec, task, t.total_loss)]
  if config.alignment.every > 0:
    probes.append(make_alignment_probe(config, t.spec, task, t.rule))
  probes.append(make_theory_probe(config, t.spec, task, t.rule, t.total_loss))
  return tuple(probes)


def measure_cell(
  config, task, seeds: int, separate: bool = False, warmup_steps: int = 2000, repeats: int = 5
) -> dict:
  config = config.copy_and_resolve_references()
  config.num_seeds = seeds
  trainer = make_trainer(config, task, separate_probes(config, task) if separate else None)
  fns = compile_seeds(trainer)
  plain = compile_seeds(make_trainer(without_probes(config), task))
  state = fns.init(seed_keys(config))
  every, curv, theory = config.eval_every, config.curvature.every, config.theory.every
  # Probes are timed on trained networks: Lanczos with a tolerance stops sooner at
  # initialization (benchmarks/lanczos_tolerance.py).
  for _ in range(warmup_steps // every):
    state = fns.run_chunk(state, every)
  align = config.alignment.every
  # The alignment probe alone (cosine with BPTT's gradient, at its own schedule), a step
  # where the curvature probe runs too, and step 0, where every probe runs.
  variants = {
    "chunk": lambda s: fns.run_chunk(s, every),
    "plain": lambda s: plain.evaluate(s, jnp.int32(every)),
    "all": lambda s: fns.evaluate(s, jnp.int32(0)),
  }
  if align:
    align_only = config.copy_and_resolve_references()
    align_only.curvature.every = align_only.theory.every = 0
    aligned = compile_seeds(make_trainer(align_only, task))
    variants["align"] = lambda s: aligned.evaluate(s, jnp.int32(align))
  if curv:
    variants["curv"] = lambda s: fns.evaluate(s, jnp.int32(curv))
  t = interleaved(variants, state, repeats)
  t_chunk, t_plain, t_all = t["chunk"], t["plain"], t["all"]
  t_align = t.get("align", t_plain)
  t_curv = t.get("curv", t_align)

  steps = trainer.eval_steps
  n_theory = sum(1 for s in steps if theory and s % theory == 0)
  n_curv = sum(1 for s in steps if curv and s % curv == 0) - n_theory
  n_align = sum(1 for s in steps if align and s % align == 0)
  n_plain = len(steps) - n_theory - n_curv
  train = config.num_steps / every * t_chunk
  evaluation = len(steps) * t_plain
  alignment = n_align * (t_align - t_plain)
  # The curvature steps are alignment steps too (both schedules are every evaluation here).
  curvature = (n_curv + n_theory) * (t_curv - t_align)
  theory_cost = n_theory * (t_all - t_curv)
  probes = curvature + theory_cost + alignment
  total = train + evaluation + probes
  lanczos = None
  if config.curvature.get("lanczos_tol", 0.0) > 0:
    metrics = fns.evaluate(state, jnp.int32(curv))
    lanczos = [int(x) for x in jax.device_get(metrics["lanczos_steps_taken"])]
  return {
    "num_steps": config.num_steps,
    "evaluations": len(steps),
    "probes_timed_at_step": warmup_steps // every * every,
    "lanczos_steps_taken": lanczos,
    "measured_s": {
      f"train_chunk_{every}_steps": round(t_chunk, 3),
      "evaluation_without_probes": round(t_plain, 3),
      "evaluation_with_alignment": round(t_align, 3),
      "evaluation_with_alignment_and_curvature": round(t_curv, 3),
      "evaluation_with_curvature_and_theory": round(t_all, 3),
    },
    "ms_per_seed_step": round(1e3 * t_chunk / every / seeds, 3),
    "extrapolated_s": {
      "train": round(train, 1),
      "evaluation": round(evaluation, 1),
      "curvature_probe": round(curvature, 1),
      "theory_probe": round(theory_cost, 1),
      "alignment_probe": round(alignment, 1),
      "total": round(total, 1),
    },
    "probe_share_of_total": round(probes / total, 3),
    "probes_over_training": round(probes / train, 3),
    "curvature_and_theory_over_training": round((curvature + theory_cost) / train, 3),
    # Both probes at every evaluation (every 250 / 400 steps), for the target.
    "both_probes_every_eval_over_training": round(len(steps) * (t_all - t_plain) / train, 3),
    "n_plain_evals": n_plain,
  }


def full_run(seeds: int, probes: bool = True) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [
      sys.executable,
      "-m",
      "experiments.reproduce",
      "--config=configs/reproduce/seq_mnist.py",
      f"--workdir={workdir}",
      "--variants=",
      f"--config.tasks.seq_mnist.tasks.seq_mnist.num_seeds={seeds}",
    ]
    if not probes:
      sweep = "--config.tasks.seq_mnist"
      for probe in ("curvature", "theory", "alignment"):
        cmd.append(f"{sweep}.tasks.seq_mnist.{probe}.every=0")
        cmd.append(f"{sweep}.rule_overrides.eprop.{probe}.every=0")
    t0 = time.perf_counter()
    # The sweep's progress lines go to stderr: stdout carries this script's JSON alone.
    subprocess.run(cmd, cwd=REPO, check=True, stdout=sys.stderr)
    wall = time.perf_counter() - t0
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
  return {"measured_wall_s": round(wall, 1), "peak_rss_mb": round(peak, 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--full", action="store_true", help="run the whole protocol instead")
  parser.add_argument(
    "--separate-probes", action="store_true", help="also time the probes without a shared Lanczos"
  )
  parser.add_argument("--no_probes", action="store_true", help="with --full: probes off")
  parser.add_argument(
    "--lanczos_tol", type=float, default=None, help="override curvature.lanczos_tol (and theory's)"
  )
  parser.add_argument(
    "--warmup_steps", type=int, default=2000, help="training steps before the timings"
  )
  args = parser.parse_args()
  result = {"device": str(jax.devices()[0]), "seeds": args.seeds}
  if args.full:
    result["full" if not args.no_probes else "full_without_probes"] = full_run(
      args.seeds, probes=not args.no_probes
    )
  else:
    sweep = get_config().tasks.seq_mnist
    if args.lanczos_tol is not None:
      result["lanczos_tol"] = args.lanczos_tol
      for block in (sweep.tasks.seq_mnist.curvature, sweep.tasks.seq_mnist.theory):
        block.lanczos_tol = args.lanczos_tol
    cells = expand(sweep)
    task = make_trainer(cells[0].config).task
    start = time.perf_counter()
    result["rules"] = {
      c.rule: measure_cell(c.config, task, args.seeds, warmup_steps=args.warmup_steps)
      for c in cells
    }
    total = sum(r["extrapolated_s"]["total"] for r in result["rules"].values())
    train = sum(r["extrapolated_s"]["train"] for r in result["rules"].values())
    parts = ("curvature_probe", "theory_probe")
    probes = sum(r["extrapolated_s"][k] for r in result["rules"].values() for k in parts)
    align = sum(r["extrapolated_s"]["alignment_probe"] for r in result["rules"].values())
    result["extrapolated_protocol_min"] = round(total / 60, 2)
    result["probes_over_training"] = round((probes + align) / train, 3)
    result["curvature_and_theory_over_training"] = round(probes / train, 3)
    result["benchmark_wall_s"] = round(time.perf_counter() - start, 1)
    if args.separate_probes:
      result["separate_probes"] = {
        c.rule: measure_cell(c.config, task, args.seeds, separate=True) for c in cells
      }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
