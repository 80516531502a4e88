"""The headline of a sweep: one table and one figure per task, from its ``results.csv``.

What ``python -m experiments.headline`` prints and draws at the end of its run
(and again on any finished sweep workdir):

* a table per task x rule x learning rate of the final train score, the
  shifted-test score, the generalization gap (train - shifted test) and
  lambda_max (the top eigenvalue of the ``W_rec`` Hessian), each as mean +- sd
  over the seeds that did not diverge, with the diverged seeds counted, and
  :math:`\\eta\\lambda_{max}/2`: plain gradient descent with step :math:`\\eta`
  is stable only where it is below 1 (:math:`\\lambda_{max} < 2/\\eta`);
* one line per diverged seed saying when and why, and for a seed that diverged in
  its first steps, what the other rules' runs from the same weights tell (the weights
  diverge under every rule, or only the rule's update did);
* ``headline_<task>.png``: the final gap and the final lambda_max per rule (a
  point per seed, mean +- s.e.m.) and lambda_max along training against
  :math:`2/\\eta`.

Every number comes from :func:`credit.analysis.stats.final_records` and
:func:`credit.analysis.stats.summarize`, so it equals the sweep's
``summary.csv``: a seed's values are from its last evaluation (for a diverged
seed, the last one before it diverged, and the seed is left out of the means).
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from credit.analysis import figures, stats
from credit.training import outputs

import matplotlib
import numpy as np

# The table's metrics, in column order.
METRICS = ("train_acc", "test_acc", "gap_acc", "lambda_max")
TABLE = "headline.md"
NUMBERS = "headline.json"
# Seed i starts from the same weights under every rule of a task, so whether an early
# divergence comes from the weights or from the rule is read off the other rules' runs.
SAME_WEIGHTS = (
  "Seed {seed} ({task}) diverged before its first evaluation after the start under every "
  "rule run here ({rules}), each from the same initial weights: at this learning rate those "
  "weights are unstable whatever the update. Such a seed is frozen and left out of every "
  "mean; the others are unaffected."
)
RULE_MADE_IT = (
  "Seed {seed} ({task}) diverged before its first evaluation after the start under "
  "{diverged} but not under {kept}, from the same initial weights: the update of the rule "
  "that diverged, not the weights alone, made it diverge."
)


class Headline(NamedTuple):
  """What :func:`write_headline` produced: the printed text and the files written."""

  text: str
  table: list[dict]
  paths: dict[str, str]


def summary_table(rows: Sequence[Mapping]) -> list[dict]:
  """Per task x rule x learning rate: seeds, diverged, and mean/std of :data:`METRICS`.

  Args:
    rows: tidy metric rows (``results.csv``).

  Returns:
    One dict per cell in rule order: ``task, rule, learning_rate, steps, seeds,
    diverged, n`` and ``<metric>_mean``, ``<metric>_std`` for each metric present
    (over the ``n`` seeds that did not diverge; std with ddof 1), and
    ``eta_lambda_half_mean`` (:math:`\\eta\\,\\overline{\\lambda_{max}}/2`) when
    lambda_max was measured.
  """
  summary = stats.summarize(stats.final_records(rows))
  table = []
  for cell in sorted(summary, key=lambda c: (c["task"], figures.rule_key(c["rule"]))):
    rec = {k: cell[k] for k in ("task", "rule", "learning_rate", "steps", "seeds", "diverged", "n")}
    for metric in METRICS:
      if f"{metric}_mean" in cell:
        rec[f"{metric}_mean"] = cell[f"{metric}_mean"]
        rec[f"{metric}_std"] = cell[f"{metric}_std"]
    if "lambda_max_mean" in rec:
      rec["eta_lambda_half_mean"] = rec["lambda_max_mean"] * cell["learning_rate"] / 2
    table.append(rec)
  return table


def divergence_notes(rows: Sequence[Mapping]) -> list[str]:
  """One line per diverged seed (rule, seed, step, reason), then what early divergence means."""
  first_eval = {
    cell: min((r["step"] for r in group if r["step"] > 0), default=0)
    for cell, group in stats.group_rows(rows, stats.CELL_COLUMNS).items()
  }
  notes: list[str] = []
  early: dict[tuple, set[str]] = {}  # (task, seed) -> rules under which it diverged early
  rules_of: dict[str, list[str]] = {}
  for rec in stats.final_records(rows):
    rules_of.setdefault(rec["task"], [])
    if rec["rule"] not in rules_of[rec["task"]]:
      rules_of[rec["task"]].append(rec["rule"])
    if not rec["diverged"]:
      continue
    notes.append(
      f"{figures.rule_label(rec['rule'])} seed {rec['seed']} diverged: {rec['diverged_reason']}."
    )
    if rec["diverged_step"] <= first_eval[tuple(rec[c] for c in stats.CELL_COLUMNS)]:
      early.setdefault((rec["task"], rec["seed"]), set()).add(rec["rule"])
  for (task, seed), diverged in early.items():
    labels = lambda names: ", ".join(figures.rule_label(r) for r in names)
    kept = [r for r in rules_of[task] if r not in diverged]
    if not kept:
      notes.append(SAME_WEIGHTS.format(seed=seed, task=task, rules=labels(rules_of[task])))
    else:
      ordered = [r for r in rules_of[task] if r in diverged]
      notes.append(
        RULE_MADE_IT.format(seed=seed, task=task, diverged=labels(ordered), kept=labels(kept))
      )
  return notes


def fit_notes(table: Sequence[Mapping], fit_criteria: Mapping | None) -> list[str]:
  """A line for each rule whose mean final score is below its task's fit criterion."""
  notes = []
  for rec in table:
    criterion = (fit_criteria or {}).get(rec["task"])
    if not criterion or f"{criterion['metric']}_mean" not in rec:
      continue
    mean = rec[f"{criterion['metric']}_mean"]
    if math.isfinite(mean) and mean < criterion["at_least"]:
      notes.append(
        f"{figures.rule_label(rec['rule'])} ends below the fit criterion "
        f"({criterion['metric']} {mean:.3f} < {criterion['at_least']:g}): the rules are "
        "compared at the end of training, not at matched fit; `python -m experiments.report "
        "--workdir=...` compares them at matched training loss."
      )
  return notes


def format_number(x: float, metric: str) -> str:
  """A table cell's number: scores and gaps to 3 decimals, lambda_max to 3 significant digits
  without an exponent (``2444``, ``155``, ``12.3``)."""
  if not math.isfinite(x):
    return "n/a"
  if metric != "lambda_max":
    return f"{x:.3f}"
  decimals = 0 if x == 0 else min(3, max(0, 2 - math.floor(math.log10(abs(x)))))
  return f"{x:.{decimals}f}"


def _mean_sd(rec: Mapping, metric: str) -> str:
  mean, sd = rec.get(f"{metric}_mean", math.nan), rec.get(f"{metric}_std", math.nan)
  if not math.isfinite(mean):
    return "n/a"
  shown = format_number(mean, metric)
  if math.isfinite(sd):
    decimals = len(shown.partition(".")[2])
    shown += f" ± {sd:.{decimals}f}"
  return shown


def _columns(table: Sequence[Mapping], score: str) -> tuple[list[str], list[list[str]]]:
  several_tasks = len({r["task"] for r in table}) > 1
  several_lrs = len({(r["task"], r["learning_rate"]) for r in table}) > len(
    {r["task"] for r in table}
  )
  header = (
    (["task"] if several_tasks else [])
    + ["rule"]
    + (["η"] if several_lrs else [])
    + [
      "steps",
      "seeds (diverged)",
      f"train {score}",
      f"test {score} (shifted)",
      "gap",
      "λ_max",
      "ηλ_max/2",
    ]
  )
  if not any(math.isfinite(r.get("lambda_max_mean", math.nan)) for r in table):
    header = header[:-2]  # no curvature probe in this run
  body = []
  for r in table:
    ratio = r.get("eta_lambda_half_mean", math.nan)
    row = (
      ([r["task"]] if several_tasks else [])
      + [figures.rule_label(r["rule"])]
      + ([f"{r['learning_rate']:g}"] if several_lrs else [])
      + [
        str(r["steps"]),
        f"{r['seeds']} ({r['diverged']})",
        _mean_sd(r, "train_acc"),
        _mean_sd(r, "test_acc"),
        _mean_sd(r, "gap_acc"),
        _mean_sd(r, "lambda_max"),
        f"{ratio:.2f}" if math.isfinite(ratio) else "n/a",
      ]
    )
    body.append(row[: len(header)])  # the lambda columns are last
  return header, body


def format_table(table: Sequence[Mapping], score: str = "acc") -> str:
  """The table as aligned plain text (what the launcher prints)."""
  header, body = _columns(table, score)
  widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header]]
  lines.append("  ".join("-" * w for w in widths))
  lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
  return "\n".join(line.rstrip() for line in lines)


def markdown_table(table: Sequence[Mapping], score: str = "acc") -> str:
  header, body = _columns(table, score)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in body]
  return "\n".join(lines)


LEGEND = (
  "Mean ± sd over the seeds that did not diverge, at the end of training. gap: train − "
  "shifted-test score (the test set is shifted: pixel noise for MNIST). λ_max: top eigenvalue "
  "of the W_rec Hessian of the training loss. ηλ_max/2 < 1: the region where gradient descent "
  "with step η is stable (λ_max < 2/η); a rule whose update is not the gradient can settle "
  "beyond it."
)


def report_text(table: Sequence[Mapping], notes: Sequence[str], score: str = "acc") -> str:
  """The table, its legend and the notes, wrapped for a terminal (what launchers print)."""

  def bullet(note: str) -> str:
    return textwrap.fill(
      note, 92, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
    )

  parts = [format_table(table, score), textwrap.fill(LEGEND, 92, break_on_hyphens=False)]
  if notes:
    parts.append("\n".join(bullet(n) for n in notes))
  return "\n\n".join(parts)


def headline_figure(rows: Sequence[Mapping], task: str, objective: str | None = None):
  """Final gap and lambda_max per rule, and lambda_max along training against 2/eta.

  Panels without their metric (no curvature probe) are left out.

  Returns:
    A ``matplotlib.figure.Figure``.
  """
  score = figures.score_of(objective)
  finals = stats.final_records(rows)
  has_lambda = figures.has_metric(rows, "lambda_max")
  n_panels = 3 if has_lambda else 1
  with matplotlib.rc_context(figures.STYLE):
    fig = figures.new_figure(5.0 * n_panels, 4.4)
    axes = fig.subplots(1, n_panels, width_ratios=[1, 1, 1.6][:n_panels])
    axes = np.atleast_1d(axes)
    figures.draw_strip(axes[0], finals, "gap_acc", score)
    axes[0].set_title("final generalization gap")
    if has_lambda:
      measured = [
        v for v in (stats.as_float(r.get("lambda_max")) for r in rows) if math.isfinite(v)
      ]
      figures.draw_strip(axes[1], finals, "lambda_max", score)
      lrs = sorted({r["learning_rate"] for r in finals})
      for lr in lrs:
        axes[1].axhline(2 / lr, color="0.35", lw=1.2, ls="--", label=f"2/η = {2 / lr:.4g}")
      if all(v > 0 for v in measured):
        axes[1].set_yscale("log")  # lambda_max spans decades between rules
      axes[1].legend(frameon=False)
      axes[1].set_title("final λ_max")
      # Log scale: a rule near 2/eta and one far above it are both readable.
      figures.draw_lambda_training(axes[2], rows, log_scale=True)
      axes[2].set_title("λ_max along training (thin: seeds; thick: mean ± s.e.m.)")
    n_div = sum(bool(r["diverged"]) for r in finals)
    left_out = f"; {n_div} of {len(finals)} runs diverged and are left out" if n_div else ""
    fig.suptitle(
      f"{figures.task_label(task)}: points are seeds, bars mean ± s.e.m.{left_out}", fontsize=11
    )
  return fig


def write_headline(workdir: str, formats: Sequence[str] = ("png",)) -> Headline:
  """Writes the headline of the sweep in ``workdir`` and returns its text and paths.

  Files: ``headline.md`` (the table, the notes on diverged seeds and fit),
  ``headline.json`` (the table's numbers) and ``headline_<task>.<fmt>`` per task.

  Raises:
    ResultsFileError: ``results.csv`` is missing, empty or malformed.
  """
  rows = outputs.read_results(os.path.join(workdir, "results.csv"))
  objective_of = figures.objectives(workdir)
  sweep_path = os.path.join(workdir, "sweep.json")
  fit_criteria = None
  if os.path.exists(sweep_path):
    with open(sweep_path) as f:
      fit_criteria = json.load(f).get("fit_criteria")
  table = summary_table(rows)
  scores = {figures.score_of(objective_of.get(r["task"])).name for r in table}
  score = "acc" if scores == {"accuracy"} else "score" if len(scores) > 1 else scores.pop()
  notes = divergence_notes(rows) + fit_notes(table, fit_criteria)
  paths = {}
  for (task,), task_rows in stats.group_rows(rows, ("task",)).items():
    fig = headline_figure(task_rows, task, objective_of.get(task))
    for fmt in formats:
      paths[f"figure_{task}_{fmt}"] = os.path.join(workdir, f"headline_{task}.{fmt}")
      fig.savefig(paths[f"figure_{task}_{fmt}"], dpi=150)
  paths["table"] = os.path.join(workdir, TABLE)
  with open(paths["table"], "w") as f:
    f.write(
      "# Headline\n\n"
      + markdown_table(table, score)
      + "\n\n"
      + LEGEND
      + "\n\n"
      + "".join(f"- {n}\n" for n in notes)
    )
  paths["numbers"] = os.path.join(workdir, NUMBERS)
  outputs.write_json(paths["numbers"], {"table": table, "notes": notes})
  return Headline(text=report_text(table, notes, score), table=table, paths=paths)
