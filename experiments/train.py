r"""Trains one config over several seeds at once and writes metrics and a summary.

  python -m experiments.train --config=configs/seq_mnist.py --workdir=/tmp/run \
      --config.num_seeds=5 --config.optimizer.learning_rate=0.02
  python -m experiments.train --config=configs/seq_mnist.py --print_config   # every field

Writes to ``--workdir`` as the run goes: ``config.json`` first, ``metrics.csv``
(one row per seed and evaluation) at each evaluation, ``summary.json`` (one
record per seed) at the end, then prints the final values (mean +- sd over the
seeds that did not diverge, and why any seed diverged) and the files' paths.
The config is validated and the workdir checked before anything is compiled. A
workdir that holds this run, finished, is left as it is (its table is printed
again); one holding a run of another config is refused; ``--overwrite``
replaces the run there.
"""

import os
import time

import credit  # noqa: F401  (first: sets JAX flags before jax is imported)
from credit import cli
from credit.analysis import headline
from credit.training import config as config_lib
from credit.training import outputs
from credit.training.run import train_and_evaluate

from absl import flags

STARTED = cli.process_start()

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.csv and summary.json.")
flags.DEFINE_bool("overwrite", False, "Replace a run already in --workdir (finished or not).")
flags.DEFINE_bool(
  "dry_run", False, "Validate the config (as a run does first), say what would run, and exit."
)
cli.define_config_file("config", None, "Run config file.", lock_config=True)
cli.define_print_config()
flags.mark_flags_as_required(["config"])


def final_report(workdir: str) -> str:
  """The run's final table, the notes on diverged seeds, and the paths of its files."""
  rows = outputs.read_results(os.path.join(workdir, outputs.METRICS))
  text = headline.report_text(headline.summary_table(rows), headline.divergence_notes(rows))
  rel = os.path.relpath(workdir)
  lines = [text, "", f"Files in {workdir if rel.startswith('..') else rel}:"]
  lines += [
    f"  {name}  {what}"
    for name, what in (
      (outputs.CONFIG, "the resolved config"),
      (outputs.METRICS, "every seed at every evaluation"),
      (outputs.SUMMARY, "each seed's final values, diverged, diverged_step, diverged_reason"),
    )
  ]
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  if FLAGS.dry_run:
    config_lib.validate(FLAGS.config)
    c = FLAGS.config
    print(
      f"valid: {c.task}/{c.rule}, {c.num_steps} steps, eval every {c.eval_every}, "
      f"{c.num_seeds} seeds, lr {c.optimizer.learning_rate:g}; nothing was run or written"
    )
    return
  cli.require("workdir")
  train_and_evaluate(FLAGS.config, FLAGS.workdir, overwrite=FLAGS.overwrite, started=STARTED)
  print("\n" + final_report(os.path.abspath(FLAGS.workdir)))
  wall = time.perf_counter() - STARTED
  print(f"Wall time {wall / 60:.1f} min, peak memory {cli.peak_memory_gb():.1f} GB.", flush=True)


if __name__ == "__main__":
  cli.run(main)
