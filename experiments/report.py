r"""Writes ``REPORT.md`` (and ``report.json``, figures) of a sweep or a reproduction from its files.

  python -m experiments.report --workdir=/tmp/repro     # a reproduction: every task, remedies
  python -m experiments.report --workdir=/tmp/sweep     # one sweep: its tasks' sections

Reads ``<workdir>/results.csv`` (a sweep workdir, ``experiments/sweep.py``) or
every ``<workdir>/<task>/<variant>/results.csv`` (``experiments/reproduce.py``);
every number is computed from them (:mod:`credit.reproduction`).
"""

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from credit import cli  # noqa: E402
from credit.reproduction.document import write_report  # noqa: E402

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A sweep or reproduction workdir.")
flags.DEFINE_list("formats", ["png"], "Figure file formats.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  print(write_report(FLAGS.workdir, FLAGS.formats))


if __name__ == "__main__":
  cli.run(main)
