r"""Trains one config over several seeds at once and writes metrics and a summary.

  python -m experiments.train --config=configs/seq_mnist.py --workdir=/tmp/run \
      --config.num_seeds=5 --config.optimizer.learning_rate=0.02

Writes ``config.json``, ``metrics.csv`` (one row per seed and evaluation) and
``summary.json`` (one record per seed) to ``--workdir``.
"""

import credit  # noqa: F401  (first: sets JAX flags before jax is imported)
from credit.training.run import train_and_evaluate

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.csv and summary.json.")
config_flags.DEFINE_config_file("config", None, "Run config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
