r"""The main job: BPTT against e-prop, with curvature, ending with a table and a figure.

  python -m experiments.headline                        # configs/headline.py -> runs/headline
  python -m experiments.headline --print_config         # every field, and how to set it
  python -m experiments.headline --dry_run              # validate, list the cells, run nothing
  python -m experiments.headline --config=configs/headline.py:smoke --workdir=/tmp/h
  python -m experiments.headline --config=configs/sweeps/paper_seq_mnist.py --workdir=runs/paper

Runs a sweep config (default ``configs/headline.py``: seq-MNIST, BPTT and
e-prop, 5 seeds each, lambda_max at every evaluation) exactly as
``experiments.sweep`` does (resumable: rerun the same command to continue or to
reprint), then prints the headline table (train score, shifted-test score,
gap, lambda_max per rule: mean +- sd over the seeds that did not diverge, and
why any seed diverged), writes it to ``headline.md`` / ``headline.json`` and
draws ``headline_<task>.png`` (:mod:`credit.analysis.headline`), and ends with
the paths of the files written, the wall time and the peak memory.
"""

import os
import textwrap
import time

import credit  # noqa: F401  (first: sets JAX flags before jax is imported)
from credit import cli
from credit.analysis.headline import write_headline
from credit.reproduction.document import claims_summary
from credit.sweeps import cells as cells_lib
from credit.sweeps.runner import describe, quiet_orbax_logs, run_sweep
from credit.training import outputs

from absl import flags

import configs

STARTED = cli.process_start()
HEADLINE_FILES = ("headline.md", "headline.json", "headline_*.png", "headline_*.pdf")
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(configs.__file__)), "headline.py")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/headline", "Folder of the sweep, its table and its figure.")
flags.DEFINE_integer("num_devices", 0, "Devices to shard seeds over (0: all visible devices).")
flags.DEFINE_bool("dry_run", False, "Validate the config, list the cells and exit.")
cli.define_config_file("config", DEFAULT_CONFIG, "Sweep config file.", lock_config=True)
cli.define_print_config()


def shown(path: str) -> str:
  """``path`` relative to the current folder when inside it, else absolute."""
  rel = os.path.relpath(path)
  return path if rel.startswith("..") else rel


def files_written(workdir: str, headline_paths: dict[str, str]) -> str:
  """The files of the run, one line each, relative to ``workdir``."""

  def name(path: str) -> str:
    return os.path.relpath(path, workdir)

  figures = [p for k, p in headline_paths.items() if k.startswith("figure_")]
  lines = [
    f"  {name(p)}  the figure: gap and λ_max per rule, λ_max along training" for p in figures
  ]
  lines += [
    f"  {name(headline_paths['table'])}, {name(headline_paths['numbers'])}  this table",
    "  results.csv  every seed at every evaluation; summary.csv: per rule",
    "  cells/<task>-<rule>-lr<η>/  each rule's config.json, metrics.csv, summary.json, checkpoint",
  ]
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  if FLAGS.dry_run:
    print(describe(cells_lib.expand(FLAGS.config)))
    return
  quiet_orbax_logs()
  workdir = os.path.abspath(FLAGS.workdir)
  result = run_sweep(FLAGS.config, workdir, FLAGS.num_devices or None, started=STARTED)
  # The table and figure of a finished job are rewritten on every rerun: in full, or (disk
  # full) not at all, the previous ones kept.
  with outputs.restored_on_failure(workdir, HEADLINE_FILES):
    headline = write_headline(workdir)
  wall = time.perf_counter() - STARTED
  rules = ", ".join(dict.fromkeys(c.rule for c in result.cells))
  ran = f"{len(result.ran)} of {len(result.cells)} cells run now"
  print(f"\n== {FLAGS.config.name}: {rules} ({ran}) ==")
  print(headline.text)
  print(
    "\nThe claims, judged as experiments.report judges them (one-sided rank tests, Holm\n"
    "within each claim, the declared margins; n per rule; README: Theory, remedies and the\n"
    "reproduction report):"
  )
  for line in claims_summary(workdir):
    print(textwrap.fill(line, 100, initial_indent="  ", subsequent_indent="    "))
  print(f"\nFiles in {shown(workdir)}:")
  print(files_written(workdir, headline.paths))
  print(
    f"\nNext: python -m experiments.figures --workdir={shown(workdir)} (every figure), "
    f"python -m experiments.report --workdir={shown(workdir)} (every statistic and verdict)."
  )
  print(f"Wall time {wall / 60:.1f} min, peak memory {cli.peak_memory_gb():.1f} GB.", flush=True)


if __name__ == "__main__":
  cli.run(main)
