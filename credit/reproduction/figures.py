"""The report's figures: λ_max against the edges along training, the remedies, the field map.

Written to ``<workdir>/figures`` by :func:`write`: per task ``theory_bound_<task>``
and ``remedies_<task>``, and ``edge_of_stability`` (every task, one panel each:
:func:`credit.analysis.figures.edge_plot`), linked from each task's theory
section (:func:`edge_figure_link`); the field map (every rule's alignment with BPTT
against λ_max, :mod:`credit.analysis.field_map`) when alignment was measured, with its
points in ``field_map.json``. The per-sweep figures
(``<sweep>/figures``, :mod:`credit.analysis.figures`) are linked, not redrawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from credit.analysis import field_map, stats
from credit.analysis import figures as figures_lib
from credit.reproduction import numbers as numbers_lib
from credit.training import outputs

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def remedy_plot(task: str, variants: Mapping[str, str], base: str, fit_numbers: Mapping) -> Figure:
  """Gap and λ_max at matched fit per seed: the base sweep and each remedy, per rule."""
  fig = Figure(figsize=(9.6, 4.0), layout="constrained")
  axes = fig.subplots(1, 2)
  fit, _ = numbers_lib.fit_criterion(numbers_lib.sweep_config(variants[base]), task)
  rows = {v: numbers_lib.task_rows(d, task) for v, d in variants.items()}
  lam = numbers_lib.lambda_metric(rows[base])
  records = {v: numbers_lib.run_records(r, fit, lam) for v, r in rows.items()}
  remedy_rules = numbers_lib.ordered_rules(
    r["rule"] for v, recs in records.items() if v != base for r in recs
  )
  order = [base] + sorted(v for v in variants if v != base)
  for i, variant in enumerate(order):
    for j, rule in enumerate(remedy_rules):
      runs = [r for r in records[variant] if r["rule"] == rule and not r["diverged"]]
      for ax, metric in zip(axes, ("gap_acc", "lambda"), strict=True):
        y = stats.finite(numbers_lib.column(runs, metric, "matched"))
        x = np.full(y.size, i + 0.15 * (j - (len(remedy_rules) - 1) / 2))
        ax.plot(
          x,
          y,
          "o",
          color=figures_lib.rule_color(rule),
          alpha=0.7,
          label=figures_lib.rule_label(rule) if i == 0 and ax is axes[0] else None,
        )
  for ax, metric in zip(axes, ("gap_acc", lam or "lambda_max"), strict=True):
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} at matched fit")
  axes[0].legend(frameon=False)
  fig.suptitle(f"remedies: per seed at the first evaluation with {fit.describe()}")
  return fig


EDGE_STEM = "edge_of_stability"
EDGE_KEY = f"*{EDGE_STEM}"  # its key in :func:`write`'s output (no task is called so)


def edge_figure_link(written: Mapping[str, Sequence[str]]) -> str | None:
  """The edge-of-stability figure's path relative to the workdir, if :func:`write` drew it."""
  paths = [p for p in written.get(EDGE_KEY, []) if p.endswith(".png")] or written.get(EDGE_KEY)
  return os.path.join("figures", os.path.basename(paths[0])) if paths else None


def write(
  workdir: str, numbers: Mapping, formats: Sequence[str] = ("png",)
) -> dict[str, list[str]]:
  """Per task ``theory_bound_<task>`` and (reproductions) ``remedies_<task>``, and the
  edge-of-stability figure of every task; ``{task: paths}``, the latter under :data:`EDGE_KEY`."""
  out_dir = os.path.join(workdir, "figures")
  os.makedirs(out_dir, exist_ok=True)
  written: dict[str, list[str]] = {}
  panels = {}
  with matplotlib.rc_context(figures_lib.STYLE):
    for task, variants in numbers_lib.find_sweeps(workdir).items():
      base = numbers_lib.base_variant(variants)
      if base is None or task not in numbers:
        continue
      t = numbers[task]
      th = t.get("threshold") or {}
      line = (f"{th['formula']} ({th['applies_to']})", th["value"]) if th.get("formula") else None
      if line is not None and not math.isfinite(line[1]):
        line = None
      rows = numbers_lib.task_rows(variants[base], task)
      panels[task] = figures_lib.EdgePanel(rows, th, tuple(t["identical"]))
      figs = {
        f"theory_bound_{task}": figures_lib.bound_plot(rows, task, line, tuple(t["identical"]))
      }
      if len(variants) > 1:
        figs[f"remedies_{task}"] = remedy_plot(task, variants, base, t)
      for stem, fig in figs.items():
        if fig is None:
          continue
        for fmt in formats:
          path = os.path.join(out_dir, f"{stem}.{fmt}")
          fig.savefig(path, bbox_inches="tight")
          written.setdefault(task, []).append(path)
    edge = figures_lib.edge_plot(panels)
    if edge is not None:
      for fmt in formats:
        path = os.path.join(out_dir, f"{EDGE_STEM}.{fmt}")
        edge.savefig(path, bbox_inches="tight")
        written.setdefault(EDGE_KEY, []).append(path)
    identical = {task: set(t.get("identical", {})) for task, t in numbers.items()}
    written.update(write_field_map(workdir, out_dir, formats, identical))
  return written


FIELD_MAP = "field_map"


def write_field_map(
  workdir: str,
  out_dir: str,
  formats: Sequence[str],
  identical: Mapping[str, set[str]] | None = None,
) -> dict[str, list[str]]:
  """``field_map.<fmt>`` and ``field_map.json`` from each task's base sweep, when alignment
  was measured; ``{"field_map": paths}`` (empty when not drawn).

  ``identical``: ``{task: rules}`` whose results equal an earlier rule's
  (:func:`credit.reproduction.numbers.identical_rules`), left out as in the tables.
  """
  identical = identical or {}
  rows, fits = {}, {}
  for task, variants in numbers_lib.find_sweeps(workdir).items():
    base = numbers_lib.base_variant(variants)
    if base is not None:
      skip = identical.get(task, set())
      rows[task] = [r for r in numbers_lib.task_rows(variants[base], task) if r["rule"] not in skip]
      fits[task] = numbers_lib.fit_criterion(numbers_lib.sweep_config(variants[base]), task)[0]
  fig, points = field_map.field_map_plot(rows, fits)
  if fig is None:
    return {}
  paths = []
  for fmt in formats:
    paths.append(os.path.join(out_dir, f"{FIELD_MAP}.{fmt}"))
    fig.savefig(paths[-1], bbox_inches="tight")
  outputs.write_json(os.path.join(out_dir, f"{FIELD_MAP}.json"), points)
  return {FIELD_MAP: paths}
