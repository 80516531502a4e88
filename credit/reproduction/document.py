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
from credit.reproduction import tables
from credit.training import outputs

INTRO = """\
Every number below is computed from the sweeps' `results.csv` files. Diverged seeds are
left out and counted. A run counts as **trained** from its first evaluation meeting its
task's fit criterion; runs that never meet it are listed and left out of the contrasts,
never averaged in. The headline compares the rules **at matched fit** (each run at its
first evaluation meeting the criterion); the values at the end of training follow.
Contrasts: difference of means with a percentile-bootstrap 95% CI, Cliff's δ, two-sided
Mann-Whitney p, and Holm's correction over every contrast of the claims table; "more
variable": the variance ratio with the Brown-Forsythe test; the λ_max-gap relation is a
Spearman correlation within each rule and pooled with the rule partialled out (ranks
minus their rule's mean rank), so that differences between rules cannot make it. Rules
whose results are identical are counted once. n is given in every cell.
"""

CLAIMS_KEY = """\
A cell is **reproduced** when every contrast of the claim points the claimed way with
Holm p < 0.05, **not reproduced** when none does, **mixed** otherwise, and **not tested**
when nothing could be computed. Claims: worse gap (Δgap > 0 vs BPTT), more variable gap
(variance ratio > 1), gap correlates with curvature (rank partial r > 0), sharper regions
(Δλ_max > 0), the theorem predicts the curvature (each rule stops getting sharper at its
own edge of stability: over the trained runs whose λ_max stops rising, the median over
the plateau of ηcλ_max/2 (SGD), or of the preconditioned sharpness over Adam's threshold
where it is measured, has its bootstrap 95% CI inside the band around 1 given in the
cell; a rule with fewer than 3 such runs is listed, not counted), the remedies help
(Δgap < 0 against the same rule without the remedy).
"""


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
) -> str:
  """The report text; ``shown_as`` is the workdir as the command line should show it."""
  cells = claims_lib.table(numbers)
  tasks = list(numbers)
  lines = [
    "# Reproduction report" if len(tasks) > 1 else f"# Report: {tasks[0]}",
    "",
    f"Generated by `python -m experiments.report --workdir={shown_as or workdir}`.",
    "",
    *provenance(workdir),
    INTRO,
    "## Claims × tasks",
    "",
    *tables.claims_table(cells, tasks),
    CLAIMS_KEY,
    "## Seeds per cell",
    "",
    *tables.seeds_table(numbers),
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
    lines += ["### (a) at matched fit (first evaluation meeting the criterion)", ""]
    lines += tables.comparison_section(t, "matched")
    lines += [
      "`*_acc` is the task's score (accuracy, or R² for regression tasks); `gap_acc` =",
      "train - test score, `gap_loss` = test - train loss (test: the shifted test set).",
      "",
    ]
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
  numbers = numbers_lib.build(workdir)
  numbers_lib.check_numbers(workdir, numbers)
  numbers = claims_lib.adjust(numbers)
  text = markdown(workdir, numbers, figures_lib.write(workdir, numbers, formats), shown_as)
  outputs.write_json(os.path.join(workdir, "report.json"), numbers)
  path = os.path.join(workdir, "REPORT.md")
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path
