r"""Chooses the learning rate per task x rule from a pilot sweep (the declared protocol).

  python -m experiments.sweep --config=configs/reproduce/lr_selection.py:delayed_match_to_sample \
      --workdir=/tmp/lr/delayed_match_to_sample
  python -m experiments.lr_selection --workdir=/tmp/lr/delayed_match_to_sample \
      --out=results/reproduction/lr_selection/delayed_match_to_sample
  python -m experiments.lr_selection --combine=results/reproduction/lr_selection

Reads the pilot's ``results.csv`` and ``sweep.json`` (one task; several folders, comma
separated: a grid and its extensions, chosen from together), chooses per rule the rate
with the best validation score at the end of the budget (:mod:`credit.analysis.lr_selection`
states the rules) and writes into ``--out`` (default: the pilot's folder) the pilot's
results files without checkpoints, ``selection.json`` and ``selection.md``, whose table it
also prints. The main sweep then runs at the chosen rates::

  python -m experiments.reproduce --config=configs/reproduce/all.py --workdir=/tmp/repro \
      --lr_selection_dir=results/reproduction/lr_selection
"""

import os

from credit import cli
from credit.analysis.lr_selection import TABLE, combined_table, write_selection

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list(
  "workdir", None, "The pilot's sweep folder (one task), or several: a grid and its extensions."
)
flags.DEFINE_string("out", None, "Where to write the selection (default: --workdir).")
flags.DEFINE_string(
  "combine", None, "Instead: write <dir>/selection.md, every <dir>/<task>/selection.json's choice."
)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"too many command-line arguments: {argv[1:]}")
  if FLAGS.combine:
    text = combined_table(FLAGS.combine)
    with open(os.path.join(FLAGS.combine, TABLE), "w") as f:
      f.write(text)
    print(text)
    return
  cli.require("workdir")
  if not FLAGS.out and len(FLAGS.workdir) > 1:
    cli.fail("--out is required with several --workdir folders")
  out = FLAGS.out or FLAGS.workdir[0]
  write_selection(FLAGS.workdir, out)
  with open(os.path.join(out, TABLE)) as f:
    print(f.read())


if __name__ == "__main__":
  cli.run(main)
