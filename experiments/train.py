r"""Trains one config over several seeds at once and writes metrics and a summary.

  python -m experiments.train --config=configs/seq_mnist.py --workdir=/tmp/run \
      --config.num_seeds=5 --config.optimizer.learning_rate=0.02

Writes to ``--workdir`` as the run goes: ``config.json`` first, ``metrics.csv``
(one row per seed and evaluation) at each evaluation, ``summary.json`` (one
record per seed) at the end. The config is validated and the workdir checked
before anything is compiled. A workdir that holds this run, finished, is left
as it is; one holding a run of another config is refused; ``--overwrite``
replaces the run there.
"""

import credit  # noqa: F401  (first: sets JAX flags before jax is imported)
from credit import cli
from credit.training.run import train_and_evaluate

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.csv and summary.json.")
flags.DEFINE_bool("overwrite", False, "Replace a run already in --workdir (finished or not).")
config_flags.DEFINE_config_file("config", None, "Run config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  train_and_evaluate(FLAGS.config, FLAGS.workdir, overwrite=FLAGS.overwrite)


if __name__ == "__main__":
  cli.run(main)
