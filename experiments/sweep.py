r"""Runs a sweep (tasks x rules x learning rates x seeds), resumably, on every device.

  python -m experiments.sweep --config=configs/sweeps/paper_seq_mnist.py --workdir=/tmp/paper
  python -m experiments.sweep --config=configs/sweeps/paper_seq_mnist.py:smoke --workdir=/tmp/s \
      --config.checkpoint_every=50

Each cell runs its seeds vmapped, with the seed axis sharded over all visible
devices (``--num_devices`` to use fewer). Re-running the same command on the
same ``--workdir`` resumes: finished cells are skipped and an interrupted cell
continues from its last checkpoint. A second sweep on a workdir in use is
refused, and so is a sweep whose cells were started with another config
(before anything is written). Outputs: ``results.csv``, ``summary.csv`` and ``cells/<id>/``; see
:mod:`credit.sweeps.results`.

Several hosts: start the same command on every host with ``--distributed``.
``jax.distributed.initialize()`` then detects the cluster (Cloud TPU, SLURM,
Open MPI, ...), or takes ``--coordinator_address``, ``--num_processes`` and
``--process_id`` (or ``$JAX_COORDINATOR_ADDRESS``). The mesh spans every
device of every host; process 0 alone reads and writes ``--workdir``.
"""

import credit  # noqa: F401  (first: sets JAX flags before jax is imported)
from credit import cli
from credit.sweeps import cells as cells_lib
from credit.sweeps.runner import describe, quiet_orbax_logs, run_sweep

from absl import flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Sweep folder: checkpoints, cells/, results.csv, summary.csv.")
flags.DEFINE_integer("num_devices", 0, "Devices to shard seeds over (0: all visible devices).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
flags.DEFINE_bool("dry_run", False, "Validate the config, list the cells and exit.")
cli.define_config_file("config", None, "Sweep config file.", lock_config=True)
cli.define_print_config()
flags.mark_flags_as_required(["config"])


def main(argv):
  import jax  # after credit (see credit.runtime)

  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  if FLAGS.distributed:
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  quiet_orbax_logs()
  if FLAGS.dry_run:
    print(describe(cells_lib.expand(FLAGS.config)))  # validated: a dry run checks the config
    return
  cli.require("workdir")
  logging.info(
    "process %d/%d, %d devices", jax.process_index(), jax.process_count(), jax.device_count()
  )
  run_sweep(FLAGS.config, FLAGS.workdir, num_devices=FLAGS.num_devices or None)


if __name__ == "__main__":
  cli.run(main)
