r"""Runs a reproduction (every task's sweep and its remedy variants), its figures and REPORT.md.

  python -m experiments.reproduce --config=configs/reproduce/all.py --workdir=/tmp/repro
  python -m experiments.reproduce --config=configs/reproduce/all.py:smoke --workdir=/tmp/rs \
      --tasks=seq_mnist --variants=lr_x2,weight_noise

Layout: ``<workdir>/<task>/base`` (the task's sweep) and
``<workdir>/<task>/<variant>`` (one sweep per remedy variant), each a sweep
workdir of :mod:`credit.sweeps.results` with its ``figures/``
(``experiments/figures.py``); then ``<workdir>/REPORT.md``, ``report.json`` and
``<workdir>/figures/`` (:mod:`credit.reproduction`). Every sweep resumes:
re-running the command skips finished cells and continues interrupted ones.
``--variants=`` (empty) runs no remedy. The config's verdict protocol (``claims``,
:mod:`credit.reproduction.protocol`) is written to ``<workdir>/claims.json`` before the
first sweep runs (``--claims_only``: only that); a workdir that declared another one is
refused, so a report's verdict rules cannot change once its results exist.
``--lr_selection_dir=<dir>`` runs each task x rule
that ``<dir>/<task>/selection.json`` names at its chosen rate
(:func:`credit.reproduction.plan.with_lr_selection`; cell ids carry the rate).
"""

import os

import credit  # noqa: F401  (before jax: sets JAX flags; matplotlib does not import jax)

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from credit import cli  # noqa: E402
from credit.analysis.figures import write_figures  # noqa: E402
from credit.reproduction import protocol  # noqa: E402
from credit.reproduction.document import write_report  # noqa: E402
from credit.reproduction.plan import plan  # noqa: E402
from credit.sweeps import cells as cells_lib  # noqa: E402
from credit.sweeps.runner import describe, quiet_orbax_logs, run_sweep  # noqa: E402
from credit.training.outputs import check_workdir  # noqa: E402

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Reproduction folder: <task>/<variant>/ sweeps, REPORT.md.")
flags.DEFINE_list("tasks", None, "Tasks to run (default: every task of the config).")
flags.DEFINE_list("variants", None, "Remedy variants to run (default: all; empty: none).")
flags.DEFINE_integer("num_devices", 0, "Devices to shard seeds over (0: all visible devices).")
flags.DEFINE_list("formats", ["png"], "Figure file formats.")
flags.DEFINE_string(
  "lr_selection_dir",
  None,
  "Learning-rate selections (<dir>/<task>/selection.json): each rule at its chosen rate.",
)
flags.DEFINE_bool("dry_run", False, "Validate every sweep, list them and their cells, then exit.")
flags.DEFINE_bool(
  "claims_only",
  False,
  "Write <workdir>/claims.json (the config's verdict protocol) and exit; a workdir that "
  "declared another protocol is refused.",
)
cli.define_config_file("config", None, "Reproduction config file.", lock_config=False)
cli.define_print_config()
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  quiet_orbax_logs()
  if FLAGS.lr_selection_dir:
    FLAGS.config.lr_selection_dir = FLAGS.lr_selection_dir
  # Every sweep of the plan is validated here, before the first one runs.
  sweeps = plan(FLAGS.config, FLAGS.tasks, FLAGS.variants, validate=True)
  if FLAGS.dry_run:
    for task, variant, sweep in sweeps:
      print(f"== {task}/{variant}")
      print(describe(cells_lib.expand(sweep)))
    return
  cli.require("workdir")
  check_workdir(FLAGS.workdir)
  if FLAGS.config.get("claims") is not None:  # declared before any result exists or is read
    path = protocol.declare(FLAGS.workdir, FLAGS.config.claims)
    if FLAGS.claims_only:
      print(path)
      return
  elif FLAGS.claims_only:
    cli.fail("the config declares no claims protocol (a `claims` block)")
  for task, variant, sweep in sweeps:
    folder = os.path.join(FLAGS.workdir, task, variant)
    print(f"== {task}/{variant} -> {folder}", flush=True)
    run_sweep(sweep, folder, num_devices=FLAGS.num_devices or None)
    write_figures(folder, formats=FLAGS.formats)
  print(write_report(FLAGS.workdir, FLAGS.formats))


if __name__ == "__main__":
  cli.run(main)
