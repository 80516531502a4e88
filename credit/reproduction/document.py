"""``REPORT.md``: the claims table, then per task every table, assembled from the numbers.

:func:`write_report` is what ``experiments/report.py`` runs: it reads every
results file first (:func:`credit.reproduction.numbers.build`), adjusts the
claims' p-values (:func:`credit.reproduction.claims.adjust`), draws the
figures, and replaces ``REPORT.md`` only with a complete report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from credit.errors import ResultsFileError
from credit.reproduction import claims as claims_lib
from credit.reproduction import figures as figures_lib
from credit.reproduction import numbers as numbers_lib
from credit.reproduction import previous, tables
from credit.reproduction import protocol as protocol_lib
from credit.training import outputs

INTRO = """\
Every number below is computed from the sweeps' `results.csv` files. Diverged seeds are
left out and counted. A run counts as **trained** from its first evaluation meeting its
task's fit criterion; runs that never meet it are listed and left out of the contrasts,
never averaged in. Rules whose results are identical are counted once; n is given in
every cell.
"""

CLAIMS_KEY = """\
Each line of a cell is one contrast with its verdict. **supported**: the one-sided test in
the paper's direction passes Holm's correction within its claim (each claim is one family
over every task and rule of this report; the primary claims are declared above, the others
are secondary families, each corrected within itself); **contradicted**: the one-sided test
in the opposite direction passes it; **equivalent**: the two one-sided tests (TOST) at the
declared margin pass it; **inconclusive**: none of these, with the minimum detectable effect
(MDE) at 80% power for that n at the level the contrast had to pass (α/m); **not tested**:
with the reason. A cell's heading counts its verdicts. Rank tests throughout: Δ is the
Hodges–Lehmann shift (for λ_max, in log space, shown as a ratio) with its Moses 95% CI,
tested by Mann-Whitney, so the direction is the rank test's own; "more variable": the
Brown-Forsythe test, one-sided, with the variance ratio; the λ_max–gap relation: the rank
correlation with the rule partialled out (ranks minus their rule's mean rank), one-sided,
TOST on Fisher's z; the theorem: SGD only, the median over each rule's plateau of ηcλ_max/2
with its bootstrap CI at level 1 − α/m, supported inside the band, contradicted entirely
outside it; fit: Fisher's exact test, one-sided, on the runs that fit at some evaluation out
of all runs (diverged ones included).
"""


def protocol_section(p: Mapping, declared: bool, numbers: Mapping) -> list[str]:
  """What the verdicts were declared to be, before the data: families, point, units, margins."""
  source = (
    f"declared in `{protocol_lib.FILE}` beside the results"
    if declared
    else f"no `{protocol_lib.FILE}` here: credit's default protocol"
  )
  units = {task: t.get("gap_unit", "gap_acc") for task, t in numbers.items()}
  headline = claims_lib.POINT_NAMES[protocol_lib.headline_block(p)]
  margins = ", ".join(
    f"`{u}` max({m['absolute']:g}, {m['relative']:g} × the reference's median)"
    for u, m in p["gap_margin"].items()
  )
  return [
    f"**Verdict protocol** ({source}): level α = {p['alpha']:g} per family, power "
    f"{p['power']:g} for the MDE; primary claims (one-sided, Holm within each claim across "
    f"tasks × rules): {', '.join(p['primary'])}; the others are secondary families. "
    f"Operating point of the verdicts: **{headline}**: each trained run's mean "
    f"over its evaluations from its first fit to first fit + {p['window']:g} × the training "
    f"budget (first fit, and the mean over the last {p['last']:g} of the budget, are shown "
    "beside it); a rule none of whose runs fits is compared at the matched training loss "
    f"unless that lies within {100 * p['chance_margin']:g}% of chance. Primary gap: "
    + ", ".join(f"{task} `{u}`" for task, u in units.items())
    + f" ({p['gap_unit_reason']}). Equivalence margins: gap {margins}; λ_max ratio within "
    f"±log {p['lambda_margin']:g}; partial r within ±{p['correlation_margin']:g}. BPTT must "
    f"fit in at least {p['min_reference_fits']} runs for a task's contrasts to be tested.",
    "",
  ]


def changes_section(numbers: Mapping) -> list[str]:
  """How the contrasts moved from the previous verdict rule (:mod:`previous`) to the new one."""
  moves = previous.moves(numbers)
  old_names = {
    previous.SUPPORTS: "counted as support (the old cell read reproduced or mixed)",
    previous.DOES_NOT: "not counted as support (the old cell read not reproduced or mixed)",
    "new": "not in the old table (the fit row; contrasts it could not compute)",
  }
  lines = [
    "**What changed** (issue 23): the verdicts. Before, a contrast supported a claim when its",
    "difference of means pointed the claimed way and its two-sided p passed one Holm",
    "correction over every claim, at each run's first fit; everything else read",
    '"not reproduced", whether the runs were untrained, too few to ever reach significance,',
    "or significantly opposite. Now each contrast gets one of five verdicts (key under the",
    "table). The same results files, judged both ways, contrast by contrast:",
    "",
    "| before | " + " | ".join(claims_lib.VERDICTS) + " | dropped |",
    "|---|" + "---|" * (len(claims_lib.VERDICTS) + 1),
  ]
  for label in (previous.SUPPORTS, previous.DOES_NOT, "new"):
    row = moves.get(label, {})
    if not row:
      continue
    cells = [str(row.get(v, 0)) for v in (*claims_lib.VERDICTS, "dropped")]
    lines.append(f"| {old_names[label]} | " + " | ".join(cells) + " |")
  return [*lines, ""]


PROVENANCE_FILE = "PROVENANCE.md"


def provenance(workdir: str) -> list[str]:
  """The workdir's ``PROVENANCE.md`` (which code made the results, what is stale), if any.

  Written by whoever ran the sweeps, so that a report regenerated from older results
  says plainly which later changes of the code they do not reflect.
  """
  path = os.path.join(workdir, PROVENANCE_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return ["## Provenance of these results", "", f.read().strip(), ""]


LR_SELECTION = os.path.join("lr_selection", "selection.md")


def lr_selection_section(workdir: str) -> list[str]:
  """The learning-rate pilot's choices (``lr_selection/selection.md``, written by
  ``experiments.lr_selection --combine``), if the workdir holds one."""
  path = os.path.join(workdir, LR_SELECTION)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read().strip()
  return [
    "## Learning-rate selection (pilot)",
    "",
    f"From `{LR_SELECTION}` (its `PROVENANCE.md` has the commands; each task's pilot results",
    "are beside it). The sweeps above ran at the rates their provenance names; the chosen",
    "rates apply to the sweeps run with `--lr_selection_dir`.",
    "",
    text,
    "",
  ]


def compute(workdir: str) -> list[str]:
  """A table of the wall time each sweep took, from its cells' ``run_info.json``.

  A cell resumed from a checkpoint records only its last invocation's time, so
  its row says so (the total is then a lower bound). Empty when no cell has one.
  """
  rows, total, resumed = [], 0.0, False
  for task, variants in sorted(numbers_lib.find_sweeps(workdir).items()):
    for variant, folder in sorted(variants.items()):
      cells = os.path.join(folder, "cells")
      infos = []
      for cell in sorted(os.listdir(cells)) if os.path.isdir(cells) else []:
        path = os.path.join(cells, cell, "run_info.json")
        if os.path.exists(path):
          with open(path) as f:
            infos.append(json.load(f))
      if not infos:
        continue
      wall = sum(float(i.get("wall_time_s", 0.0)) for i in infos)
      cont = any(i.get("resumed_from_step") is not None for i in infos)
      resumed |= cont
      total += wall
      seeds = sorted({int(i.get("padded_seeds", 0)) for i in infos})
      rows.append(
        f"| {task} | {variant} | {len(infos)} | {'/'.join(map(str, seeds))} | "
        f"{wall / 60:.1f}{' (resumed: lower bound)' if cont else ''} |"
      )
  if not rows:
    return []
  return [
    "## Compute",
    "",
    "Wall time of each sweep (cells run one after another, each on one CPU core unless",
    "the provenance says otherwise), from the cells' `run_info.json`.",
    "",
    "| task | variant | cells | seeds | minutes |",
    "|---|---|---|---|---|",
    *rows,
    f"| **total** | | | | **{total / 60:.1f}**{' (lower bound)' if resumed else ''} |",
    "",
  ]


def field_map_section(workdir: str, figures: Mapping[str, Sequence[str]]) -> list[str]:
  """The field map (every rule's alignment with BPTT against λ_max), if drawn: its link and
  a table of its points (``field_map.json``, next to the figure)."""
  paths = [p for p in figures.get(figures_lib.FIELD_MAP, []) if p.endswith(".png")]
  if not paths:
    return []
  rel = os.path.relpath(paths[0], workdir)
  lines = [
    "## The field map",
    "",
    f"[Alignment with BPTT against λ_max per rule, coloured by the gap]({rel}) (points and",
    "95% bootstrap CIs in `figures/field_map.json`; each rule at matched fit where any of its",
    "runs fits, else at the end).",
    "",
  ]
  points_path = os.path.splitext(paths[0])[0] + ".json"
  if os.path.exists(points_path):
    with open(points_path) as f:
      lines += field_map_table(json.load(f))
  return lines


def field_map_table(points: Mapping[str, Mapping[str, Mapping]]) -> list[str]:
  """The field map's points: per task and rule, where each is read, its runs, and the means
  over runs [95% bootstrap CIs] of alignment, training score, gap and λ_max."""

  def cell(p: Mapping, name: str) -> str:
    low, high = p[f"{name}_ci"]
    return f"{tables.fmt(p[name])} [{tables.fmt(low, 3)}, {tables.fmt(high, 3)}]"

  lines = [
    "| task | rule | at | runs (diverged) | mean cos with BPTT | train_acc | gap_acc | λ_max |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for task, rules in points.items():
    for rule, p in rules.items():
      at = "matched fit" if p["where"] == "matched" else "end"
      lines.append(
        f"| {task} | {rule} | {at} | {p['n']} ({p['diverged']}) | {cell(p, 'align')} | "
        f"{cell(p, 'train')} | {cell(p, 'gap')} | {cell(p, 'lambda')} |"
      )
  return [
    *lines,
    "",
    "runs: the runs the point averages (at matched fit: those that fit; diverged runs left",
    "out). BPTT's cosine is 1 by definition (not measured).",
    "",
  ]


def markdown(
  workdir: str,
  numbers: Mapping,
  figures: Mapping[str, Sequence[str]],
  shown_as: str | None = None,
  claims: tuple[Mapping, bool] | None = None,
) -> str:
  """The report text; ``shown_as`` is the workdir as the command line should show it.

  ``claims``: the verdict protocol and whether the workdir declared it
  (:func:`credit.reproduction.protocol.load`).
  """
  p, declared = claims or (protocol_lib.as_dict(protocol_lib.default()), False)
  cells = claims_lib.table(numbers)
  tasks = list(numbers)
  lines = [
    "# Reproduction report" if len(tasks) > 1 else f"# Report: {tasks[0]}",
    "",
    f"Generated by `python -m experiments.report --workdir={shown_as or workdir}`.",
    "",
    *changes_section(numbers),
    *provenance(workdir),
    INTRO,
    *protocol_section(p, declared, numbers),
    "## Claims × tasks",
    "",
    *tables.claims_table(cells, tasks),
    CLAIMS_KEY,
    "## Fit as an outcome",
    "",
    *tables.fit_outcome_table(numbers),
    "## Seeds per cell",
    "",
    *tables.seeds_table(numbers),
    *lr_selection_section(workdir),
    *compute(workdir),
    *field_map_section(workdir, figures),
    *tables.edge_definitions(
      next(iter(numbers.values())).get("edge_params", {}), figures_lib.edge_figure_link(figures)
    ),
  ]
  for task, t in numbers.items():
    lam = t["lambda_metric"] or "lambda_max"
    lines += [f"## {task}", "", f"λ_max metric: `{lam}`.", ""]
    if t.get("extra_curvature"):
      lines += [
        "Also measured at the same evaluations (spiking network, `curvature.also_surrogate`):",
        ", ".join(f"`{m}`" for m in t["extra_curvature"]),
        "(the surrogate-gradient Jacobian, spikes frozen: λ_max of its symmetric part and",
        "its largest real eigenvalue; `lambda_max` is the smoothed proxy's Hessian). They",
        "are in the tables below beside `lambda_max`, described but outside the claims.",
        "",
      ]
    lines += ["### fit", "", *tables.fit_section(t)]
    window = t.get("points", {}).get("window", 0.25)
    last = t.get("points", {}).get("last", 0.25)
    lines += [
      f"### (a) in the window after fit (each run's mean from its first fit to first fit + "
      f"{window:g} × the budget: the verdicts' operating point)",
      "",
    ]
    lines += tables.comparison_section(t, "window")
    lines += [
      "`*_acc` is the task's score (accuracy, or R² for regression tasks); `gap_acc` =",
      "train - test score (test: the shifted test set), `gap_norm` = (train − test) / (train",
      "− chance), `gap_clean` = train − clean test score, `gap_loss` = test − train loss;",
      "where a task has single-factor shifts, `gap_delay` and `gap_noise` = train − the score",
      "on the longer-delay-only and extra-noise-only test sets (described, never a verdict).",
      "Δ: difference of means [bootstrap 95% CI]; HL: the Hodges–Lehmann shift; MW p:",
      "two-sided (the claims use the one-sided tests).",
      "",
    ]
    lines += ["### (a1) at first fit (first evaluation meeting the criterion)", ""]
    lines += tables.comparison_section(t, "matched")
    lines += [f"### (a2) over the last {last:g} of training (runs that fit at some point)", ""]
    lines += tables.comparison_section(t, "last")
    lines += ["### (b) at the end of training (runs that meet the criterion there)", ""]
    lines += tables.comparison_section(t, "end")
    lines += ["### (c) variability of the gap at matched fit", ""]
    lines += tables.variability_section(t)
    lines += ["### (d) λ_max and the gap at matched fit", ""]
    lines += tables.relation_section(t)
    lines += ["### (e) the theory: λ_max against the predicted bound", ""]
    lines += tables.theory_section(t)
    edge = tables.edge_section(t, figures_lib.edge_figure_link(figures))
    if edge:
      lines += ["### (e2) the theory: where each rule stops getting sharper", "", *edge]
    lines += ["### (f) remedies at matched fit (vs the same rule, base)", ""]
    lines += tables.remedies_section(t)
    lines += ["### (g) at matched training loss", ""]
    lines += tables.matched_loss_section(t)
    lines += ["### figures", ""]
    links = list(figures.get(task, []))
    for variants in [numbers_lib.find_sweeps(workdir).get(task, {})]:
      base = numbers_lib.base_variant(variants)
      fig_dir = os.path.join(variants[base], "figures") if base else ""
      if base and os.path.isdir(fig_dir):
        links += [
          os.path.join(fig_dir, f)
          for f in sorted(os.listdir(fig_dir))
          if f.endswith(".png") and task in f
        ]
    for path in dict.fromkeys(links):  # a sweep workdir's figures folder is the report's too
      rel = os.path.relpath(path, workdir)
      lines.append(f"- [{os.path.splitext(os.path.basename(rel))[0]}]({rel})")
    lines.append("")
  return "\n".join(lines)


SUMMARY_CLAIMS = ("worse_gap", "sharper", "fit")


def claims_summary(workdir: str, claims: Sequence[str] = SUMMARY_CLAIMS) -> list[str]:
  """The verdicts of ``claims`` on a sweep or reproduction workdir, one plain line each.

  The same numbers and verdicts as :func:`write_report` (the workdir's declared protocol,
  else the default), for a launcher to print; nothing is written.
  """
  p, _ = protocol_lib.load(workdir)
  numbers = claims_lib.adjust(numbers_lib.build(workdir, p), p)
  names = dict(claims_lib.CLAIMS)
  lines = []
  for task, t in numbers.items():
    for claim in claims:
      for j in t["verdicts"][claim]:
        text = claims_lib.line(j).replace("*", "")
        lines.append(f"{names[claim]} ({task}): {text}")
  return lines


def write_report(
  workdir: str, formats: Sequence[str] = ("png",), shown_as: str | None = None
) -> str:
  """Writes ``REPORT.md``, ``report.json`` and the figures; returns the report's path.

  ``workdir`` is a sweep workdir (one ``results.csv``) or a reproduction
  workdir (``<task>/<variant>/results.csv``). Every results file is read and
  checked first; the report is written to a temporary file and renamed over
  ``REPORT.md`` only when complete, so a failure leaves a previous report as it was.

  Raises:
    ResultsFileError: a missing, empty or malformed ``results.csv``, or no run at all.
  """
  if not os.path.isdir(workdir):
    raise ResultsFileError(f"{workdir} is not a folder (a sweep or reproduction workdir)")
  claims = protocol_lib.load(workdir)
  numbers = numbers_lib.build(workdir, claims[0])
  numbers_lib.check_numbers(workdir, numbers)
  numbers = claims_lib.adjust(numbers, claims[0])
  figures = figures_lib.write(workdir, numbers, formats)
  text = markdown(workdir, numbers, figures, shown_as, claims)
  outputs.write_json(os.path.join(workdir, "report.json"), numbers)
  path = os.path.join(workdir, "REPORT.md")
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path
