r"""``REPORT.md`` of a reproduction, generated from its sweeps' ``results.csv`` files only.

A reproduction workdir (written by ``experiments/reproduce.py``) holds one
sweep workdir (:mod:`credit.sweeps.results`) per task and variant::

  <workdir>/<task>/base/results.csv        every rule, no remedy
  <workdir>/<task>/<variant>/results.csv   a remedy variant (some rules, one remedy)

For each task the report has, over the seeds that did not diverge, from each
run's final values (:func:`credit.analysis.stats.final_records`):

(a) the generalization gap per rule (mean, sd), with each rule against BPTT:
    Cohen's d, Cliff's delta and the two-sided Mann-Whitney U p-value;
(b) :math:`\lambda_{max}` per rule, with the same statistics;
(c) the correlation of :math:`\lambda_{max}` with the gap over runs pooled
    across rules (Pearson and Spearman r and p);
(d) the predicted bound :math:`2/(\eta c)` against the measured
    :math:`\lambda_{max}` (theory probe) at the end of training;
(e) each remedy's effect on :math:`\lambda_{max}` and the gap, against the
    same rule without it (difference of means, Cliff's delta, Mann-Whitney p);

a summary table over tasks at the top (the headline of (a)-(d) per task and
rule), and links to the figures. :math:`\lambda_{max}` is the curvature probe's
``lambda_max`` where it was measured, else the theory probe's
``theory_lambda_max``. Every number is computed here from the files;
:func:`build` returns them as a dict (also written to ``report.json``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

from credit.analysis import stats
from credit.errors import ResultsFileError
from credit.training import outputs

import numpy as np

BASE = "base"
GAPS = ("gap_acc", "gap_loss")
# Shown next to the gaps: a gap only means something at a given level of fit.
SCORES = ("train_acc", "test_acc")
LAMBDA_METRICS = ("lambda_max", "theory_lambda_max")
REFERENCE_RULE = "bptt"


# ------------------------------------------------------------------ statistics


def cohens_d(x: Sequence[float], y: Sequence[float]) -> float:
  r"""Cohen's d, :math:`(\bar x - \bar y) / s_p` with the pooled sd (ddof 1); NaN if undefined."""
  x, y = _finite(x), _finite(y)
  if x.size < 2 or y.size < 2:
    return math.nan
  pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2)
  if pooled == 0:
    return math.nan
  return float((x.mean() - y.mean()) / math.sqrt(pooled))


def cliffs_delta(x: Sequence[float], y: Sequence[float]) -> float:
  r"""Cliff's delta :math:`P(X > Y) - P(X < Y)` over all pairs, in :math:`[-1, 1]`."""
  x, y = _finite(x), _finite(y)
  if x.size == 0 or y.size == 0:
    return math.nan
  diff = x[:, None] - y[None, :]
  return float((np.sum(diff > 0) - np.sum(diff < 0)) / diff.size)


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float:
  """Two-sided Mann-Whitney U p-value (scipy.stats; exact for small samples without ties)."""
  from scipy import stats as sp_stats

  x, y = _finite(x), _finite(y)
  if x.size == 0 or y.size == 0:
    return math.nan
  if np.ptp(np.concatenate([x, y])) == 0:
    return 1.0
  return float(sp_stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def _finite(values: Sequence[float]) -> np.ndarray:
  x = np.asarray([stats.as_float(v) for v in values], float)
  return x[np.isfinite(x)]


def _describe(values: Sequence[float]) -> dict:
  x = _finite(values)
  return {
    "n": int(x.size),
    "mean": float(x.mean()) if x.size else math.nan,
    "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
    "median": float(np.median(x)) if x.size else math.nan,
  }


def _compare(x: Sequence[float], y: Sequence[float]) -> dict:
  return {
    "diff": _describe(x)["mean"] - _describe(y)["mean"],
    "cohens_d": cohens_d(x, y),
    "cliffs_delta": cliffs_delta(x, y),
    "mw_p": mann_whitney_p(x, y),
  }


# ------------------------------------------------------------------- loading


def find_sweeps(workdir: str) -> dict[str, dict[str, str]]:
  """``{task: {variant: sweep dir}}`` for every ``<task>/<variant>/results.csv`` in ``workdir``."""
  found: dict[str, dict[str, str]] = {}
  for task in sorted(os.listdir(workdir)):
    task_dir = os.path.join(workdir, task)
    if not os.path.isdir(task_dir):
      continue
    for variant in sorted(os.listdir(task_dir)):
      if os.path.exists(os.path.join(task_dir, variant, "results.csv")):
        found.setdefault(task, {})[variant] = os.path.join(task_dir, variant)
  return found


def _final_runs(sweep_dir: str) -> tuple[list[dict], list[dict]]:
  """``(kept, diverged)`` final records of a sweep's runs."""
  rows = outputs.read_results(os.path.join(sweep_dir, "results.csv"))
  finals = stats.final_records(rows)
  return [r for r in finals if not r["diverged"]], [r for r in finals if r["diverged"]]


def _optimizer(sweep_dir: str, task: str) -> str | None:
  """The task's optimizer in the sweep's ``sweep.json`` (None when it is not there)."""
  path = os.path.join(sweep_dir, "sweep.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    tasks = json.load(f).get("tasks", {})
  return tasks.get(task, {}).get("optimizer", {}).get("name")


def lambda_metric(records: Sequence[Mapping]) -> str | None:
  """``lambda_max`` if any run measured it, else ``theory_lambda_max``, else None."""
  for name in LAMBDA_METRICS:
    if any(math.isfinite(stats.as_float(r.get(name))) for r in records):
      return name
  return None


def _rules(records: Sequence[Mapping]) -> list[str]:
  from credit.analysis.figures import RULE_ORDER

  names = {r["rule"] for r in records}
  order = {r: i for i, r in enumerate(RULE_ORDER)}
  return sorted(names, key=lambda r: (order.get(r, len(order)), r))


def _by_rule(records: Sequence[Mapping], rule: str) -> list[Mapping]:
  return [r for r in records if r["rule"] == rule]


def _column(records: Sequence[Mapping], metric: str | None) -> list[float]:
  """One value per record (NaN throughout when the metric was never measured: ``None``)."""
  return [stats.as_float(r.get(metric)) if metric else math.nan for r in records]


# ------------------------------------------------------------------- numbers


def _task_numbers(task: str, variants: Mapping[str, str]) -> dict:
  kept, diverged = _final_runs(variants[BASE])
  lam = lambda_metric(kept)
  rules = _rules(kept + diverged)
  reference = _by_rule(kept, REFERENCE_RULE)
  out: dict = {
    "lambda_metric": lam,
    "optimizer": _optimizer(variants[BASE], task),
    "rules": {},
    "correlations": {},
    "remedies": {},
  }
  for rule in rules:
    runs = _by_rule(kept, rule)
    entry = {
      "runs": len(runs) + len(_by_rule(diverged, rule)),
      "diverged": len(_by_rule(diverged, rule)),
      "learning_rate": _describe(_column(runs, "learning_rate"))["mean"],
      "steps": max((int(r["step"]) for r in _by_rule(kept + diverged, rule)), default=0),
    }
    for metric in (*GAPS, *SCORES, "lambda"):
      name = lam if metric == "lambda" else metric
      entry[metric] = _describe(_column(runs, name))
      if rule != REFERENCE_RULE and reference:
        entry[metric]["vs_bptt"] = _compare(_column(runs, name), _column(reference, name))
    entry["theory"] = _theory_numbers(runs, lam)
    out["rules"][rule] = entry
  for gap in GAPS:
    c = stats.correlation(_column(kept, lam), _column(kept, gap))
    out["correlations"][gap] = c._asdict()
  for variant, sweep_dir in variants.items():
    if variant == BASE:
      continue
    v_kept, v_div = _final_runs(sweep_dir)
    out["remedies"][variant] = {}
    for rule in _rules(v_kept + v_div):
      runs, base_runs = _by_rule(v_kept, rule), _by_rule(kept, rule)
      entry = {
        "runs": len(runs) + len(_by_rule(v_div, rule)),
        "diverged": len(_by_rule(v_div, rule)),
      }
      for metric in (*GAPS, *SCORES, "lambda"):
        name = lam if metric == "lambda" else metric
        entry[metric] = _describe(_column(runs, name))
        entry[metric]["vs_base"] = _compare(_column(runs, name), _column(base_runs, name))
      out["remedies"][variant][rule] = entry
  return out


def _theory_numbers(runs: Sequence[Mapping], lam: str | None) -> dict:
  """Final predicted bound against the measured lambda_max (theory probe metrics)."""
  if not any(math.isfinite(stats.as_float(r.get("theory_c"))) for r in runs):
    return {}
  measured = _column(runs, "theory_lambda_max")
  bound = _column(runs, "predicted_lambda_bound")
  below = [
    m < b for m, b in zip(measured, bound, strict=True) if math.isfinite(m) and not math.isnan(b)
  ]
  eta = _describe(_column(runs, "theory_eta"))["mean"]
  # c <= 0 gives an infinite bound (no constraint): the median keeps those runs.
  bounds = [b for b in bound if not math.isnan(b)]
  return {
    "c": _describe(_column(runs, "theory_c")),
    "eta": eta,
    "gd_bound": 2.0 / eta if eta > 0 else math.nan,
    "predicted_bound": {
      **_describe(bound),
      "median": float(np.median(bounds)) if bounds else math.nan,
      "infinite": int(sum(math.isinf(b) for b in bounds)),
    },
    "measured": _describe(measured),
    "stability_ratio": _describe(_column(runs, "theory_stability_ratio")),
    "update_map_min_real": _describe(_column(runs, "update_map_min_real")),
    "fraction_below_bound": float(np.mean(below)) if below else math.nan,
  }


def build(workdir: str) -> dict:
  """Every number of the report: ``{task: {...}}`` (see the module docstring)."""
  return {
    task: _task_numbers(task, variants)
    for task, variants in find_sweeps(workdir).items()
    if BASE in variants
  }


# ------------------------------------------------------------------- figures


def theory_figures(workdir: str, formats: Sequence[str] = ("png",)) -> dict[str, list[str]]:
  """Per task: the lambda_max trajectory with the predicted and GD bounds, and the remedies.

  Written to ``<workdir>/figures``; returns ``{task: [paths]}``.
  """
  from credit.analysis.figures import STYLE, rule_color, rule_label

  import matplotlib

  out_dir = os.path.join(workdir, "figures")
  os.makedirs(out_dir, exist_ok=True)
  written: dict[str, list[str]] = {}
  with matplotlib.rc_context(STYLE):
    for task, variants in find_sweeps(workdir).items():
      if BASE not in variants:
        continue
      figs = {}
      rows = outputs.read_results(os.path.join(variants[BASE], "results.csv"))
      if any(math.isfinite(stats.as_float(r.get("theory_lambda_max"))) for r in rows):
        figs[f"theory_bound_{task}"] = _bound_figure(rows, task, rule_color, rule_label)
      if len(variants) > 1:
        figs[f"remedies_{task}"] = _remedy_figure(variants, rule_color, rule_label)
      for stem, fig in figs.items():
        for fmt in formats:
          path = os.path.join(out_dir, f"{stem}.{fmt}")
          fig.savefig(path, bbox_inches="tight")
          written.setdefault(task, []).append(path)
  return written


def _bound_figure(rows, task, rule_color, rule_label):
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6.4, 4.4))
  ax = fig.subplots()
  finals = stats.final_records(rows)
  diverged = {tuple(r[c] for c in stats.RUN_COLUMNS) for r in finals if r["diverged"]}
  if diverged:
    fig.suptitle(f"{len(diverged)} of {len(finals)} runs diverged and are left out", fontsize=9)
  for rule in _rules(rows):
    runs = [
      r
      for r in rows
      if r["rule"] == rule and tuple(r[c] for c in stats.RUN_COLUMNS) not in diverged
    ]
    steps = sorted(
      {r["step"] for r in runs if math.isfinite(stats.as_float(r.get("theory_lambda_max")))}
    )
    if not steps:
      continue
    at = lambda s, m, runs=runs: np.nanmedian(
      [stats.as_float(r.get(m)) for r in runs if r["step"] == s]
    )
    color = rule_color(rule)
    ax.plot(
      steps,
      [at(s, "theory_lambda_max") for s in steps],
      color=color,
      label=f"{rule_label(rule)}: $\\lambda_{{max}}$",
    )
    ax.plot(
      steps,
      [at(s, "predicted_lambda_bound") for s in steps],
      color=color,
      ls="--",
      label=f"{rule_label(rule)}: $2/(\\eta c)$",
    )
  etas = [stats.as_float(r.get("theory_eta")) for r in rows]
  etas = [e for e in etas if math.isfinite(e) and e > 0]
  if etas:
    ax.axhline(2.0 / max(etas), color="0.4", ls=":", label=r"$2/\eta$ (GD)")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("sharpness (median over seeds)")
  ax.set_title(f"{task}: measured $\\lambda_{{max}}$ and predicted bound")
  ax.legend(fontsize=7, frameon=False)
  return fig


def _remedy_figure(variants, rule_color, rule_label):
  from matplotlib.figure import Figure

  fig = Figure(figsize=(9.6, 4.0))
  axes = fig.subplots(1, 2)
  labels: list[str] = []
  finals = {v: _final_runs(d)[0] for v, d in variants.items()}
  lam = lambda_metric(finals[BASE])
  remedy_rules = sorted({r["rule"] for v, f in finals.items() if v != BASE for r in f})
  order = [BASE] + sorted(v for v in variants if v != BASE)
  for i, variant in enumerate(order):
    labels.append(variant)
    for j, rule in enumerate(remedy_rules):
      runs = _by_rule(finals[variant], rule)
      for ax, metric in zip(axes, ("gap_acc", lam), strict=True):
        y = _finite(_column(runs, metric))
        x = np.full(y.size, i + 0.15 * (j - (len(remedy_rules) - 1) / 2))
        ax.plot(
          x,
          y,
          "o",
          color=rule_color(rule),
          alpha=0.7,
          label=rule_label(rule) if i == 0 and ax is axes[0] else None,
        )
  for ax, metric in zip(axes, ("gap_acc", lam or "lambda_max"), strict=True):
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel(metric)
  axes[0].legend(frameon=False)
  fig.suptitle("remedies: final values per seed")
  return fig


# ------------------------------------------------------------------- markdown


def _fmt(x, digits: int = 4) -> str:
  x = stats.as_float(x)
  if math.isnan(x):
    return "n/a"
  if math.isinf(x):
    return "inf" if x > 0 else "-inf"
  return f"{x:.{digits}g}"


def _pm(d: Mapping) -> str:
  return f"{_fmt(d['mean'])} ± {_fmt(d['sd'])}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return lines + [""]


def _vs(d: Mapping, key: str) -> list[str]:
  c = d.get(key)
  if not c:
    return ["", "", ""]
  return [_fmt(c["cohens_d"], 3), _fmt(c["cliffs_delta"], 3), _fmt(c["mw_p"], 3)]


def summary(numbers: Mapping) -> list[str]:
  """``### summary``: one row per task and rule, the headline of sections (a)-(d).

  Whether each rule's gap and lambda_max exceed BPTT's (difference of means and
  Mann-Whitney p), the task's lambda_max-gap correlation, and the end-of-training
  fraction of runs below the predicted bound: the study's three claims side by side.
  """
  rows = []
  for task, t in numbers.items():
    corr = t["correlations"].get("gap_acc", {})
    r = f"{_fmt(corr.get('pearson_r'), 3)} (p {_fmt(corr.get('pearson_p'), 3)})"
    for rule, e in t["rules"].items():
      cells = []
      for metric in ("gap_acc", "lambda"):
        vs = e[metric].get("vs_bptt")
        cells += [_pm(e[metric]), *((_fmt(vs["diff"]), _fmt(vs["mw_p"], 3)) if vs else ("", ""))]
      th = e["theory"]
      rows.append(
        [
          task,
          t["optimizer"] or "?",
          rule,
          f"{e['gap_acc']['n']}/{e['runs']}",
          *cells,
          _fmt(th["c"]["median"], 3) if th else "",
          _fmt(th["fraction_below_bound"], 3) if th else "",
          r,
        ]
      )
  return [
    "### summary",
    "",
    *_table(
      [
        "task",
        "optimizer",
        "rule",
        "n kept/runs",
        "gap_acc",
        "Δ vs BPTT",
        "MW p",
        "λ_max",
        "Δ vs BPTT",
        "MW p",
        "c median",
        "fraction λ_max < 2/(ηc)",
        "r(λ_max, gap_acc) (task)",
      ],
      rows,
    ),
    "The sections below hold every statistic; `gap_acc` is train - shifted-test score.",
    "",
  ]


def markdown(workdir: str, numbers: Mapping, figures: Mapping[str, Sequence[str]]) -> str:
  """The report text (see the module docstring)."""
  lines = [
    "# Reproduction report",
    "",
    f"Generated by `python -m experiments.report --workdir={workdir}` from the sweeps'",
    "`results.csv` files (final values per seed; diverged seeds left out and counted).",
    "Effect sizes compare each rule with BPTT (a, b) or each remedy with the same rule",
    "without it (e): Cohen's d (pooled sd), Cliff's delta, and the two-sided Mann-Whitney U",
    "p-value (scipy.stats). Correlations pool the runs of every rule of the base sweep.",
    "",
  ]
  lines += summary(numbers)
  for task, t in numbers.items():
    lam = t["lambda_metric"] or "lambda_max"
    lines += [f"## {task}", "", f"λ_max metric: `{lam}`.", ""]
    lines += ["### (a) generalization gap per rule", ""]
    rows = []
    for rule, e in t["rules"].items():
      for gap in GAPS:
        rows.append(
          [
            rule,
            gap,
            str(e[gap]["n"]),
            str(e["diverged"]),
            str(e["steps"]),
            _pm(e[gap]),
            *_vs(e[gap], "vs_bptt"),
            _pm(e["train_acc"]),
            _pm(e["test_acc"]),
          ]
        )
    lines += _table(
      [
        "rule",
        "gap",
        "n",
        "diverged",
        "steps",
        "mean ± sd",
        "Cohen's d vs BPTT",
        "Cliff's δ vs BPTT",
        "MW p vs BPTT",
        "train_acc",
        "test_acc",
      ],
      rows,
    )
    lines += [
      "`*_acc` is the task's score (accuracy, or R² for regression tasks); `gap_acc` =",
      "train - test score, `gap_loss` = test - train loss (test: the shifted test set).",
      "",
    ]
    lines += ["### (b) λ_max per rule", ""]
    rows = [
      [
        rule,
        str(e["lambda"]["n"]),
        _pm(e["lambda"]),
        _fmt(e["lambda"]["median"]),
        _fmt(2.0 / e["learning_rate"] if e["learning_rate"] else math.nan),
        *_vs(e["lambda"], "vs_bptt"),
      ]
      for rule, e in t["rules"].items()
    ]
    lines += _table(
      [
        "rule",
        "n",
        "mean ± sd",
        "median",
        "2/η (base lr)",
        "Cohen's d vs BPTT",
        "Cliff's δ vs BPTT",
        "MW p vs BPTT",
      ],
      rows,
    )
    lines += ["### (c) correlation of λ_max with the gap (runs pooled over rules)", ""]
    rows = [
      [
        gap,
        str(c["n"]),
        _fmt(c["pearson_r"], 3),
        _fmt(c["pearson_p"], 3),
        _fmt(c["spearman_r"], 3),
        _fmt(c["spearman_p"], 3),
      ]
      for gap, c in t["correlations"].items()
    ]
    lines += _table(["gap", "n", "Pearson r", "Pearson p", "Spearman r", "Spearman p"], rows)
    lines += ["### (d) predicted bound 2/(ηc) vs measured λ_max (end of training)", ""]
    rows = []
    for rule, e in t["rules"].items():
      th = e["theory"]
      if not th:
        continue
      rows.append(
        [
          rule,
          _pm(th["c"]),
          _fmt(th["eta"]),
          _fmt(th["gd_bound"]),
          _fmt(th["predicted_bound"]["median"]),
          _pm(th["measured"]),
          _pm(th["stability_ratio"]),
          _pm(th["update_map_min_real"]),
          _fmt(th["fraction_below_bound"], 3),
        ]
      )
    if rows:
      lines += _table(
        [
          "rule",
          "c (mean ± sd)",
          "η",
          "2/η",
          "2/(ηc) median",
          "theory λ_max (mean ± sd)",
          "ηcλ_max/2",
          "min Re μ(I-ηJ)",
          "fraction λ_max < 2/(ηc)",
        ],
        rows,
      )
      lines += [
        "c = vᵀJv / vᵀHv along the top Hessian eigenvector v; the bound is that of",
        "plain SGD (with Adam or momentum it describes an SGD step at the same η).",
      ]
      if t["optimizer"] and t["optimizer"] != "sgd":
        lines += [
          f"**This task trains with `{t['optimizer']}`**: its step along v is not η times",
          "the gradient, so 2/η and 2/(ηc) are reference lines here, not predictions.",
        ]
      lines += [""]
    else:
      lines += ["No theory probe in this sweep (`theory.every = 0`).", ""]
    lines += ["### (e) remedies: effect on λ_max and the gap (vs the same rule, base)", ""]
    rows = []
    for variant, per_rule in t["remedies"].items():
      for rule, e in per_rule.items():
        for metric in ("lambda", *GAPS, *SCORES):
          name = lam if metric == "lambda" else metric
          vs = e[metric]["vs_base"]
          rows.append(
            [
              variant,
              rule,
              name,
              str(e[metric]["n"]),
              str(e["diverged"]),
              _pm(e[metric]),
              _fmt(vs["diff"]),
              _fmt(vs["cliffs_delta"], 3),
              _fmt(vs["mw_p"], 3),
            ]
          )
    if rows:
      lines += _table(
        [
          "variant",
          "rule",
          "metric",
          "n",
          "diverged",
          "mean ± sd",
          "Δ mean vs base",
          "Cliff's δ",
          "MW p",
        ],
        rows,
      )
    else:
      lines += ["No remedy variants were run.", ""]
    lines += ["### figures", ""]
    links = list(figures.get(task, []))
    fig_dir = os.path.join(workdir, task, BASE, "figures")
    if os.path.isdir(fig_dir):
      links += [os.path.join(fig_dir, f) for f in sorted(os.listdir(fig_dir)) if f.endswith(".png")]
    for path in links:
      rel = os.path.relpath(path, workdir)
      lines.append(f"- [{os.path.splitext(os.path.basename(rel))[0]}]({rel})")
    lines.append("")
  return "\n".join(lines)


def check_numbers(workdir: str, numbers: Mapping) -> None:
  """Refuses numbers that would make an empty report (a task without any run).

  Raises:
    ResultsFileError: no task, or a task whose base sweep has no run.
  """
  if not numbers:
    raise ResultsFileError(
      f"no <task>/{BASE}/results.csv under {workdir}; run experiments/reproduce.py first"
    )
  for task, t in numbers.items():
    if not t["rules"] or not any(e["runs"] for e in t["rules"].values()):
      raise ResultsFileError(f"{os.path.join(workdir, task, BASE, 'results.csv')} holds no run")


def write_report(workdir: str, formats: Sequence[str] = ("png",)) -> str:
  """Writes ``REPORT.md``, ``report.json`` and the theory figures; returns the report's path.

  Every results file is read and checked first (:func:`build`, :func:`check_numbers`);
  the report is written to a temporary file and renamed over ``REPORT.md`` only when
  complete, so a failure leaves a previous report as it was.

  Raises:
    ResultsFileError: a missing, empty or malformed ``results.csv``, or no run at all.
  """
  if not os.path.isdir(workdir):
    raise ResultsFileError(f"{workdir} is not a folder (the reproduction's --workdir)")
  numbers = build(workdir)
  check_numbers(workdir, numbers)
  text = markdown(workdir, numbers, theory_figures(workdir, formats))
  outputs.write_json(os.path.join(workdir, "report.json"), numbers)
  path = os.path.join(workdir, "REPORT.md")
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path
