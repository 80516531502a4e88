r"""Writes the figures of a finished (or partly finished) sweep: PNG and PDF, one per file.

  python -m experiments.figures --workdir=/tmp/paper
  python -m experiments.figures --workdir=/tmp/paper --out_dir=/tmp/paper_figs --formats=png

Reads ``<workdir>/results.csv``; writes to ``<workdir>/figures`` by default,
with ``figure_stats.json`` (the correlations printed in the titles). Figures
whose metrics are absent are skipped with a note (see
:mod:`credit.analysis.figures`).
"""

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from credit import cli  # noqa: E402
from credit.analysis.figures import write_figures  # noqa: E402

from absl import flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Sweep folder holding results.csv.")
flags.DEFINE_string("out_dir", None, "Where figures go (default: <workdir>/figures).")
flags.DEFINE_list("formats", ["png", "pdf"], "File formats.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  report = write_figures(FLAGS.workdir, FLAGS.out_dir, FLAGS.formats)  # logs skipped figures
  logging.info("%d files written", len(report.written))
  for path in report.written:
    print(path)


if __name__ == "__main__":
  cli.run(main)
