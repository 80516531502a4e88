r"""The declared learning-rate selection: per task x rule, a rate from a pilot's validation scores.

The protocol (issue 24), the same for every rule: a pilot sweep runs a grid of
learning rates per task x rule (``configs/reproduce/lr_selection.py``: >= 4 rates,
5 seeds the main sweep does not use, the main sweep's full budget); from its
results rows :func:`select` picks one rate per task x rule by these rules, in order:

1. **Score.** Each seed's validation score (``val_acc``: accuracy, or R² on
   regression tasks) at the end of the budget: its last evaluation
   (:func:`credit.analysis.stats.final_records`). Only a validation metric
   (``val_*``) may be the score; the shifted test sets are never read, so no
   test column can change the choice.
2. **Stability.** A rate at which any seed diverged lies past the rule's stable
   range and is not eligible, however good its other seeds are. Among the
   eligible rates, a rate's score is the mean over its seeds.
3. **Choice.** The eligible rate with the best mean score; rates within
   ``tie_tolerance`` of the best count as tied (default 0.01, one percentage point:
   with 5 seeds and the seeds' spread of these tasks, a smaller difference is noise),
   and a tie goes to the **smallest** tied rate (further from the edge of stability).
4. **Edges.** If the chosen rate is the grid's largest or smallest and better than
   every other rate by more than the tolerance, the best rate may lie beyond the
   grid: the choice stands but carries ``grid_edge = "upper"`` / ``"lower"``
   (extend the grid there before trusting it). A smallest rate chosen by a tie
   carries no flag: a larger rate scores as well, and the tie rule picks the
   smallest of its equals wherever the grid ends (saturated scores tie at every rate).
   If no rate is eligible (every rate had a diverged seed), the choice is the
   rate with the fewest diverged seeds (then by rule 3 over its non-diverged seeds)
   and carries ``no_stable_rate = True``.

Per rate the record also counts the runs that reached the sweep's fit criterion
(:mod:`credit.analysis.fit`, first fit before any divergence), for the report; the
fit count does not enter the choice. :func:`write_selection` writes a pilot's
folder into ``results/<study>/lr_selection/<task>/``: ``selection.json``,
``selection.md`` and, in ``pilot/``, the sweep's results files (``sweep.json``,
``results.csv``, ``summary.csv``, the cells' ``config.json``, ``run_info.json``,
``summary.json``; no checkpoints). The sweep sits one level down so that a study's
report, which reads every ``<study>/<task>/<variant>/results.csv`` as a sweep of the
study, does not take the pilot for a task. :func:`chosen_rates` reads
``selection.json`` back for the main sweep
(:func:`credit.reproduction.plan.with_lr_selection`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence

from credit.analysis import fit as fit_lib
from credit.analysis import stats
from credit.errors import ConfigError
from credit.training import outputs

SCORE = "val_acc"
TIE_TOLERANCE = 0.01
SELECTION = "selection.json"
TABLE = "selection.md"
PILOT = "pilot"
# The files of a sweep folder that a results folder keeps (checkpoints never).
SWEEP_FILES = ("sweep.json", "results.csv", "summary.csv")
CELL_FILES = ("config.json", "run_info.json", "summary.json")


def _check_score(score: str) -> None:
  if not score.startswith("val_"):
    raise ValueError(
      f"the selection score must be a validation metric (val_*), got {score!r}: the "
      "shifted test sets are never used to choose a learning rate"
    )


def rate_records(
  rows: Sequence[Mapping], fit: fit_lib.FitCriterion | None = None, score: str = SCORE
) -> list[dict]:
  """Per task x rule x learning rate: runs, diverged and fit counts, the score's mean and sd.

  Args:
    rows: a pilot's results rows (``results.csv``: one per run and evaluation).
    fit: the fit criterion whose count is reported (``None``: ``fit`` is NaN).
    score: the validation metric (module docstring, rule 1).

  Returns:
    Records sorted by task, rule and rate, with ``runs``, ``diverged``, ``fit``,
    ``score_mean``, ``score_sd`` (ddof 1; over the non-diverged seeds) and ``n``
    (how many seeds the mean is over).
  """
  _check_score(score)
  finals = stats.final_records(rows)
  runs = stats.group_rows(rows, stats.RUN_COLUMNS)
  out = []
  for key, group in sorted(stats.group_rows(finals, stats.CELL_COLUMNS).items()):
    kept = [r for r in group if not r["diverged"]]
    mean, sd, _, n = stats.mean_std_sem([stats.as_float(r.get(score)) for r in kept])
    if fit is None:
      fitted = math.nan
    else:
      fitted = sum(
        fit_lib.first_fit(runs[tuple(r[c] for c in stats.RUN_COLUMNS)], fit, ()) is not None
        for r in group
      )
    out.append(
      dict(
        zip(stats.CELL_COLUMNS, key, strict=True),
        runs=len(group),
        diverged=len(group) - len(kept),
        fit=fitted,
        score_mean=mean,
        score_sd=sd,
        n=n,
      )
    )
  return out


def choose(records: Sequence[Mapping], tie_tolerance: float = TIE_TOLERANCE) -> dict:
  """The chosen rate of one task x rule from its per-rate records (module docstring, 2-4).

  Returns:
    ``learning_rate`` (the choice), ``grid`` (the rates, ascending), ``grid_edge``
    (``"upper"``, ``"lower"`` or ``""``), ``no_stable_rate`` and ``tied_rates`` (the
    candidates within the tolerance of the best, the choice first).

  Raises:
    ValueError: no records, several tasks or rules among them, or a negative tolerance.
  """
  if not records:
    raise ValueError("no rate records to choose from")
  if len({(r["task"], r["rule"]) for r in records}) != 1:
    raise ValueError("choose() takes the records of one task x rule")
  if not tie_tolerance >= 0:
    raise ValueError(f"tie_tolerance must be >= 0, got {tie_tolerance!r}")
  ordered = sorted(records, key=lambda r: float(r["learning_rate"]))
  grid = [float(r["learning_rate"]) for r in ordered]
  eligible = [r for r in ordered if r["diverged"] == 0]
  no_stable = not eligible
  if no_stable:
    fewest = min(r["diverged"] for r in ordered)
    eligible = [r for r in ordered if r["diverged"] == fewest]
  scored = [r for r in eligible if not math.isnan(stats.as_float(r["score_mean"]))]
  if scored:
    best = max(float(r["score_mean"]) for r in scored)
    tied = [r for r in scored if float(r["score_mean"]) >= best - tie_tolerance]
    chosen = tied[0]  # ``ordered`` is ascending: the first tied rate is the smallest
  else:  # no seed left with a score anywhere: the smallest candidate
    chosen = eligible[0]
    tied = [chosen]
  rate = float(chosen["learning_rate"])
  edge = ""
  if len(grid) > 1 and len(tied) == 1 and rate == grid[-1]:
    edge = "upper"
  elif len(grid) > 1 and len(tied) == 1 and rate == grid[0]:
    edge = "lower"
  return dict(
    learning_rate=rate,
    grid=grid,
    grid_edge=edge,
    no_stable_rate=no_stable,
    tied_rates=[float(r["learning_rate"]) for r in tied],
  )


def select(
  rows: Sequence[Mapping],
  fit: fit_lib.FitCriterion | None = None,
  score: str = SCORE,
  tie_tolerance: float = TIE_TOLERANCE,
) -> dict[str, dict[str, dict]]:
  """``{task: {rule: choice}}`` from a pilot's rows; each choice as :func:`choose` plus ``rates``.

  ``rates`` holds that rule's per-rate records (:func:`rate_records`).
  """
  records = rate_records(rows, fit, score)
  out: dict[str, dict[str, dict]] = {}
  for (task, rule), group in stats.group_rows(records, ("task", "rule")).items():
    choice = choose(group, tie_tolerance)
    keep = ("learning_rate", "runs", "diverged", "fit", "score_mean", "score_sd", "n")
    choice["rates"] = [{k: r[k] for k in keep} for r in group]
    out.setdefault(task, {})[rule] = choice
  return out


def markdown_table(task: str, choices: Mapping[str, Mapping], score: str = SCORE) -> str:
  """One row per rule x rate: score mean ± sd, fit and diverged counts, the chosen rate marked."""
  lines = [
    f"Learning-rate pilot, {task}: {score} at the end of the budget, mean ± sd over the "
    "non-diverged seeds; **bold**: the chosen rate.",
    "",
    f"| rule | learning rate | {score} | fit | diverged | runs |",
    "|---|---|---|---|---|---|",
  ]
  for rule, choice in choices.items():
    for r in choice["rates"]:
      lr = f"{r['learning_rate']:g}"
      if r["learning_rate"] == choice["learning_rate"]:
        lr = f"**{lr}**"
      sd = "" if math.isnan(r["score_sd"]) else f" ± {r['score_sd']:.3f}"
      fitted = "" if math.isnan(stats.as_float(r["fit"])) else f"{int(r['fit'])}/{r['runs']}"
      lines.append(
        f"| {rule} | {lr} | {r['score_mean']:.3f}{sd} | {fitted} | {r['diverged']} | {r['runs']} |"
      )
  notes = (
    [
      f"{rule}: chosen rate at the grid's {c['grid_edge']} edge (extend the grid there)"
      for rule, c in choices.items()
      if c["grid_edge"]
    ]
    + [
      f"{rule}: tied within the tolerance: {', '.join(f'{x:g}' for x in c['tied_rates'])} "
      "(the smallest is chosen)"
      for rule, c in choices.items()
      if len(c["tied_rates"]) > 1
    ]
    + [
      f"{rule}: every rate had a diverged seed; the rate with the fewest is kept"
      for rule, c in choices.items()
      if c["no_stable_rate"]
    ]
  )
  if notes:
    lines += ["", *[f"- {n}" for n in notes]]
  return "\n".join(lines) + "\n"


def combined_table(folder: str) -> str:
  """Per task x rule of every ``<folder>/<task>/selection.json``: the grid and the choice.

  Raises:
    ConfigError: no selection in ``folder``.
  """
  tasks = sorted(
    t for t in os.listdir(folder) if os.path.isfile(os.path.join(folder, t, SELECTION))
  )
  if not tasks:
    raise ConfigError(f"no <task>/{SELECTION} in {folder}")
  lines = [
    "Learning rates chosen by the declared protocol (credit.analysis.lr_selection): "
    "validation score at the end of the budget, mean ± sd over the chosen rate's seeds.",
    "",
    "| task | rule | grid | chosen | score | fit | diverged | note |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for task in tasks:
    with open(os.path.join(folder, task, SELECTION)) as f:
      record = json.load(f)
    for rule, c in record["rules"].items():
      r = next(x for x in c["rates"] if x["learning_rate"] == c["learning_rate"])
      sd = "" if r["score_sd"] is None or math.isnan(r["score_sd"]) else f" ± {r['score_sd']:.3f}"
      mean = r["score_mean"]
      score = "n/a" if mean is None or math.isnan(mean) else f"{mean:.3f}{sd}"
      fitted = "" if r["fit"] is None or math.isnan(r["fit"]) else f"{int(r['fit'])}/{r['runs']}"
      tied = c.get("tied_rates", [])
      note = "; ".join(
        ([f"at the grid's {c['grid_edge']} edge"] if c["grid_edge"] else [])
        + ([f"tied with {', '.join(f'{x:g}' for x in tied[1:])}"] if len(tied) > 1 else [])
        + (["no rate without a diverged seed"] if c["no_stable_rate"] else [])
      )
      grid = ", ".join(f"{g:g}" for g in c["grid"])
      lines.append(
        f"| {task} | {rule} | {grid} | {c['learning_rate']:g} | {score} | {fitted} | "
        f"{r['diverged']}/{r['runs']} | {note} |"
      )
  return "\n".join(lines) + "\n"


def _copy_sweep(src: str, dst: str) -> None:
  os.makedirs(dst, exist_ok=True)
  for name in SWEEP_FILES:
    if os.path.exists(os.path.join(src, name)):
      shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
  cells = os.path.join(src, "cells")
  for cell in sorted(os.listdir(cells)) if os.path.isdir(cells) else ():
    if not os.path.exists(os.path.join(cells, cell, "summary.json")):
      continue  # unfinished: its rows are not in results.csv either
    os.makedirs(os.path.join(dst, "cells", cell), exist_ok=True)
    for name in CELL_FILES:
      path = os.path.join(cells, cell, name)
      if os.path.exists(path):
        shutil.copy2(path, os.path.join(dst, "cells", cell, name))


def pilot_folders(count: int) -> list[str]:
  """The names of a selection's pilot sweeps in ``out``: ``pilot``, ``pilot_2``, ..."""
  return [PILOT] + [f"{PILOT}_{i}" for i in range(2, count + 1)]


def write_selection(
  workdirs: str | Sequence[str],
  out: str,
  score: str = SCORE,
  tie_tolerance: float = TIE_TOLERANCE,
) -> dict:
  """Writes ``selection.json``, ``selection.md`` and the pilots' results files into ``out``.

  ``workdirs``: the pilot's sweep folder (one task), or several (the first grid,
  then its extensions, :mod:`configs.reproduce.lr_selection`), whose rows are chosen
  from together; their results files go to ``out/pilot/``, ``out/pilot_2/``, ...
  (nothing is copied where ``out`` is the only workdir). Returns the selection
  (``selection.json``'s content).

  Raises:
    ResultsFileError: a workdir has no readable ``results.csv``.
    ConfigError: the pilots hold more than one task, one (task, rule, rate, seed)
      twice, or different fit criteria.
  """
  workdirs = [workdirs] if isinstance(workdirs, str) else list(workdirs)
  rows, sweeps = [], []
  for workdir in workdirs:
    rows += outputs.read_results(os.path.join(workdir, "results.csv"))
    with open(os.path.join(workdir, "sweep.json")) as f:
      sweeps.append(json.load(f))
  tasks = sorted({r["task"] for r in rows})
  if len(tasks) != 1:
    raise ConfigError(f"a selection is of one task, {workdirs} hold {tasks}")
  (task,) = tasks
  runs = [tuple(r[c] for c in stats.RUN_COLUMNS) for r in rows if r["step"] == 0]
  if len(set(runs)) != len(runs):
    raise ConfigError(f"{workdirs} hold some run (task, rule, rate, seed) more than once")
  specs = [(s.get("fit_criteria") or {}).get(task) for s in sweeps]
  if any(spec != specs[0] for spec in specs):
    raise ConfigError(f"the pilots {workdirs} declare different fit criteria: {specs}")
  fit = fit_lib.criterion(specs[0])
  choices = select(rows, fit, score, tie_tolerance)[task]
  if [os.path.abspath(w) for w in workdirs] != [os.path.abspath(out)]:
    for workdir, name in zip(workdirs, pilot_folders(len(workdirs)), strict=True):
      _copy_sweep(workdir, os.path.join(out, name))
  seeds = sorted({int(r["seed"]) for r in rows})
  record = dict(
    task=task,
    score=score,
    tie_tolerance=tie_tolerance,
    fit_criterion=None if fit is None else fit._asdict(),
    grid=sorted({float(r["learning_rate"]) for r in rows}),
    num_seeds=len(seeds),
    base_seed=sweeps[0]["tasks"][task].get("seed"),
    num_steps=sweeps[0]["tasks"][task].get("num_steps"),
    pilots=pilot_folders(len(workdirs)),
    rules=choices,
  )
  outputs.write_json(os.path.join(out, SELECTION), record)
  with open(os.path.join(out, TABLE), "w") as f:
    f.write(markdown_table(task, choices, score))
  return record


def chosen_rates(path: str) -> tuple[str, dict[str, float]]:
  """``(task, {rule: chosen rate})`` from a ``selection.json`` (a file or its folder).

  Raises:
    ConfigError: the file is missing or holds no choice for some rule.
  """
  if os.path.isdir(path):
    path = os.path.join(path, SELECTION)
  if not os.path.isfile(path):
    raise ConfigError(f"no learning-rate selection at {path} (run experiments.lr_selection)")
  with open(path) as f:
    record = json.load(f)
  rates = {}
  for rule, choice in record["rules"].items():
    rate = choice.get("learning_rate")
    if not isinstance(rate, int | float) or not 0 < rate < math.inf:
      raise ConfigError(f"{path}: rule {rule!r} has no valid chosen rate ({rate!r})")
    rates[rule] = float(rate)
  return record["task"], rates
