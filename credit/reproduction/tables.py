"""The report's tables as markdown lines, one function per section, from its numbers.

Every function takes one task's numbers (:func:`credit.reproduction.numbers.task_numbers`,
after :func:`credit.reproduction.claims.adjust`) and returns markdown lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from credit.reproduction import claims as claims_lib

GAPS = ("gap_acc", "gap_loss")


def fmt(x, digits: int = 4) -> str:
  """:func:`credit.reproduction.claims.fmt` with the tables' default of 4 digits."""
  return claims_lib.fmt(x, digits)


def pm(d: Mapping) -> str:
  """``mean ± sd`` of a :func:`credit.analysis.stats.describe` dict."""
  return f"{fmt(d['mean'])} ± {fmt(d['sd'])}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return lines + [""]


def contrast_cells(c: Mapping | None) -> list[str]:
  """Δ with its 95% CI, the Hodges–Lehmann shift, Cliff's δ and MW p (blank when absent)."""
  if not c:
    return ["", "", "", ""]
  ci = c.get("ci") or [math.nan, math.nan]
  return [
    f"{fmt(c['diff'])} [{fmt(ci[0], 3)}, {fmt(ci[1], 3)}]",
    fmt(c.get("hl"), 3),
    fmt(c["cliffs_delta"], 3),
    fmt(c["mw_p"], 3),
  ]


CONTRAST_HEADER = ["Δ vs BPTT [95% CI]", "HL", "Cliff's δ", "MW p"]
BASE_HEADER = ["Δ vs base [95% CI]", "HL", "Cliff's δ", "MW p"]
COMPARED = ("gap_acc", "gap_norm", "gap_clean", "gap_loss", "lambda")


def fit_outcome_table(numbers: Mapping) -> list[str]:
  """Per task and rule: runs, diverged, fitted, and the fit verdict against BPTT."""
  rows = []
  for task, t in numbers.items():
    judged = {j["key"]: j for j in t.get("verdicts", {}).get("fit", [])}
    for rule, e in t["rules"].items():
      j = judged.get(rule)
      if j is None:
        verdict = "reference"
      elif j["verdict"] == claims_lib.NOT_TESTED:
        verdict = f"not tested: {j['reason']}"
      else:
        verdict = (
          f"{j['verdict']}: deficit {fmt(j['estimate'], 3)} [{fmt(j['ci'][0], 3)}, "
          f"{fmt(j['ci'][1], 3)}], one-sided p_Holm {fmt(j['p_support'], 2)}"
          + (f"; {claims_lib.mde_text(j)}" if j["verdict"] == claims_lib.INCONCLUSIVE else "")
        )
      rows.append([task, rule, str(e["runs"]), str(e["diverged"]), str(e["fit_ever"]), verdict])
  lines = table(["task", "rule", "runs", "diverged", "fit (ever)", "fails to fit more often"], rows)
  return lines + [
    "Fit: the run meets its task's fit criterion at some evaluation; a diverged run that",
    "never did counts as not fitting. Deficit: BPTT's fit rate minus the rule's (Newcombe",
    "95% CI); Fisher's exact test, one-sided, Holm over the rules and tasks of this row.",
    "",
  ]


def claims_table(cells: Mapping[str, Mapping[str, claims_lib.Cell]], tasks: Sequence[str]) -> list:
  """Claims (rows) x tasks (columns): verdict, then its evidence, ``<br>``-separated."""
  rows = []
  for key, label in claims_lib.CLAIMS:
    row = [label]
    for task in tasks:
      cell = cells[key][task]
      row.append("<br>".join([f"**{cell.verdict}**", *cell.evidence]))
    rows.append(row)
  return table(["claim", *tasks], rows)


def seeds_table(numbers: Mapping) -> list[str]:
  """Runs per task and rule: total, diverged, meeting the criterion ever / at the end."""
  rows = []
  for task, t in numbers.items():
    for rule, e in t["rules"].items():
      rows.append(
        [
          task,
          rule,
          str(e["runs"]),
          str(e["diverged"]),
          str(e["fit_ever"]),
          str(e["fit_end"]),
          str(e["runs"] - e["diverged"] - e["fit_ever"]),
        ]
      )
  return table(["task", "rule", "runs", "diverged", "fit (ever)", "fit at end", "never fit"], rows)


def fit_section(t: Mapping) -> list[str]:
  f = t["fit"]
  source = "declared in sweep.json" if f["declared"] else "default: sweep.json declares none"
  lines = [f"Fit criterion: `{f['metric']} ≥ {f['at_least']:g}` ({source}).", ""]
  for later, earlier in t["identical"].items():
    lines += [
      f"`{later}` gave results identical to `{earlier}` in every seed and evaluation "
      f"(detected from the results): it is reported as `{later}` = `{earlier}` and counted once.",
      "",
    ]
  rows = [
    [
      rule,
      str(e["runs"]),
      str(e["diverged"]),
      str(e["fit_ever"]),
      str(e["fit_end"]),
      ", ".join(map(str, e["never_fit"])) or "-",
      pm(e["fit_step"]) if e["fit_ever"] else "never",
      pm(e["all_end"]["train_acc"]),
    ]
    for rule, e in t["rules"].items()
  ]
  return lines + table(
    [
      "rule",
      "runs",
      "diverged",
      "fit (ever)",
      "fit at end",
      "seeds never fit",
      "first fit step",
      "final train_acc (all kept runs)",
    ],
    rows,
  )


def comparison_section(t: Mapping, block: str) -> list[str]:
  """Gap, scores and λ_max per rule in ``block`` (``matched`` or ``end``), against BPTT."""
  rows, empty = [], []
  for rule, e in t["rules"].items():
    b = e[block]
    if not any(b[m]["n"] for m in (*GAPS, "lambda")):
      empty.append(rule)
      continue
    for metric in (*COMPARED, *t.get("split_gaps", ()), *t.get("extra_curvature", ())):
      if metric not in b:
        continue
      rows.append(
        [
          rule,
          t["lambda_metric"] or "lambda_max" if metric == "lambda" else metric,
          str(b[metric]["n"]),
          pm(b[metric]),
          *contrast_cells(b[metric].get("vs_bptt")),
          pm(b["train_acc"]),
          pm(b["test_acc"]),
        ]
      )
  return table(
    ["rule", "metric", "n", "mean ± sd", *CONTRAST_HEADER, "train_acc", "test_acc"],
    rows,
  ) + ([f"No run fits here: {', '.join(empty)}.", ""] if empty else [])


def variability_section(t: Mapping) -> list[str]:
  """The primary gap's spread against BPTT's at each operating point (two-sided p)."""
  names = claims_lib.POINT_NAMES
  rows = [
    [
      rule,
      names[where],
      fmt(bf["ratio"], 3),
      fmt(bf["statistic"], 3),
      fmt(bf["p"], 3),
    ]
    for rule, e in t["rules"].items()
    for where, bf in e.get("spread", {}).items()
  ]
  if not rows:
    return ["No rule to compare with BPTT.", ""]
  return table(
    ["rule", "at", f"var({t.get('gap_unit', 'gap')}) / BPTT's", "Brown-Forsythe W", "p"], rows
  )


def relation_section(t: Mapping) -> list[str]:
  """λ_max against the primary gap at each operating point (two-sided p)."""
  names = claims_lib.POINT_NAMES
  rows = []
  for where, rel in (t.get("relations") or {"matched": t["relation"]}).items():
    q = rel["partial"]
    lines = [(f"within {rule}", c) for rule, c in rel["within"].items()]
    lines.append(("pooled (rules mixed)", rel["pooled"]))
    for label, c in lines:
      rows.append(
        [names[where], label, str(c["n"]), fmt(c["spearman_r"], 3), fmt(c["spearman_p"], 3)]
      )
    label = f"pooled, rule partialled out (rules: {q['groups']})"
    rows.append([names[where], label, str(q["n"]), fmt(q["r"], 3), fmt(q["p"], 3)])
  return table(["at", "runs", "n", "Spearman r", "p"], rows)


def theory_section(t: Mapping) -> list[str]:
  th = t.get("threshold") or {}
  if th.get("formula"):
    lines = [
      f"Optimizer `{th['optimizer']}`: the threshold that applies is {th['formula']} = "
      f"{fmt(th['value'])} on the sharpness of {th['applies_to']}.",
    ]
    if th["applies_to"] != "H":
      measured = any(
        (e.get("edge") or {}).get("optimizer_edge", {}).get("measured") for e in t["rules"].values()
      )
      lines += [
        "The preconditioned sharpness `lambda_max_precond` (λ_max of P^{-1/2} H P^{-1/2},",
        "P = diag(√v̂ + ε), over the synapses the update moves: under Dale's law the silent",
        "synapses that the projection holds at zero are left out) is compared with it below."
        if measured
        else "The preconditioned sharpness is **not measured** in these results (no",
        *(
          []
          if measured
          else ["`lambda_max_precond` column), so the optimizer's edge is not tested here."]
        ),
        "The rule's own bound 2/(ηc) below is derived for SGD: it describes an SGD step at",
        "the same η, not this optimizer's.",
      ]
  else:
    lines = [f"Optimizer `{th.get('optimizer') or 'unknown'}`: no threshold derived."]
  lines.append("")
  rows = []
  for rule, e in t["rules"].items():
    th_e = e["theory"]
    if not th_e:
      continue
    rows.append(
      [
        rule,
        pm(th_e["c"]),
        fmt(th_e["eta"]),
        fmt(th_e["gd_bound"]),
        fmt(th_e["predicted_bound"]["median"]),
        pm(th_e["measured"]),
        pm(th_e["stability_ratio"]),
        fmt(th_e["stability_ratio"]["median"], 3),
        pm(th_e["update_map_radius"]),
        fmt(th_e["fraction_below_bound"], 3),
      ]
    )
  if not rows:
    return lines + ["No theory probe in this sweep (`theory.every = 0`).", ""]
  return (
    lines
    + table(
      [
        "rule",
        "c (mean ± sd)",
        "η",
        "2/η",
        "2/(ηc) median",
        "theory λ_max",
        "ηcλ_max/2",
        "ηcλ_max/2 median",
        "radius of I-ηJ",
        "fraction λ_max < 2/(ηc)",
      ],
      rows,
    )
    + [
      "End of training, every kept run; c = vᵀJv / vᵀHv along the top Hessian eigenvector v.",
      "A rule at its own edge of stability has ηcλ_max/2 ≈ 1 and a radius of I - ηJ ≈ 1.",
      "",
    ]
  )


def _ratio_cell(d: Mapping | None) -> str:
  """``median [CI]`` over the plateau, then the value at its start, of :func:`numbers._ratios`."""
  if not d or not d["plateau"]["n"]:
    return "n/a"
  p, a = d["plateau"], d["at"]
  return (
    f"{fmt(p['median'], 3)} [{fmt(p['ci'][0], 3)}, {fmt(p['ci'][1], 3)}] {p['verdict']}"
    f" (start {fmt(a['median'], 3)})"
  )


def edge_section(t: Mapping, figure: str | None = None) -> list[str]:
  """Where each rule stops getting sharper, and its ratios to the edges there."""
  th = t.get("threshold") or {}
  rows = []
  for rule, e in t["rules"].items():
    ed = e.get("edge")
    if not ed:
      continue
    opt = ed["optimizer_edge"] if ed["optimizer_edge"]["measured"] else None
    rows.append(
      [
        rule,
        "trained" if ed["population"] == "trained" else "kept (none fits)",
        f"{ed['found']}/{ed['runs']}",
        ", ".join(map(str, ed["still_rising"])) or "-",
        str(ed["never_rose"]),
        fmt(ed["plateau_step"]["median"]),
        _ratio_cell(opt) if opt else "not measured",
        _ratio_cell(ed.get("own_edge")) if "own_edge" in ed else "SGD only",
        _ratio_cell(ed.get("update_map_radius")) if "update_map_radius" in ed else "SGD only",
      ]
    )
  if not rows:
    return []
  lines = [
    "Definitions: *Edge of stability* above. Each ratio: the median over the plateau",
    "[bootstrap 95% CI], where it lies, and in brackets the median at the plateau's start.",
    "",
  ]
  lines += table(
    [
      "rule",
      "runs",
      "stop rising",
      "seeds still rising",
      "never rose",
      "plateau step (median)",
      f"λ({th.get('applies_to') or '-'}) / ({th.get('formula') or 'threshold'})",
      "ηcλ_max/2 (own edge)",
      "radius of I-ηJ",
    ],
    rows,
  )
  if figure:
    lines += [f"Along training: [edge_of_stability]({figure}).", ""]
  return lines


def edge_definitions(params: Mapping, figure: str | None = None) -> list[str]:
  """What the edge tables of the tasks measure, said once (parameters from the numbers)."""
  band = params.get("band", [math.nan, math.nan])
  return [
    "## Edge of stability: where each rule stops getting sharper",
    "",
    f"Per run, its λ_max series is smoothed by a running median of {params.get('window')}",
    "measured evaluations (probes measured every few evaluations: the measured ones only).",
    "After a leading fall (the smoothed λ_max dropping by more than the tolerance per",
    "evaluation) is skipped, the run **stops getting sharper** at the first evaluation after",
    "which the smoothed λ_max never again exceeds its value there by more than",
    f"{fmt(params.get('tolerance'))} (relative). A run with fewer than {params.get('min_after')}",
    "measured evaluations after that point is **still rising** (listed by seed, left out of",
    "the medians); *never rose* counts runs that stop where the leading fall ends. From",
    "there to the end is the run's **plateau**. Per run and ratio, its median over the",
    "plateau (and its value at the plateau's start); per rule, the median over runs with a",
    "bootstrap 95% CI. Ratios: λ over the optimizer's threshold (SGD 2/η and momentum",
    "(2+2β)/η on λ_max of H; Adam (2+2β₁)/((1−β₁)η) on the preconditioned",
    "`lambda_max_precond`, with its own plateau, *not measured* where the results lack it);",
    "under SGD the rule's own edge ηcλ_max/2 = λ_max/(2/(ηc)) and the spectral radius of",
    "I − ηJ_rule (theory probe; the rule's bound is derived for SGD only). A ratio **sits at",
    f"the edge** when its CI lies inside [{fmt(band[0])}, {fmt(band[1])}], below or above it",
    "when entirely outside, inconclusive otherwise. Runs: each rule's trained runs (meeting",
    "the fit criterion at some evaluation), or all its kept runs, said so, when none is;",
    "diverged runs and duplicate rules are left out.",
    "",
    *([f"Along training, every task: [edge_of_stability]({figure}).", ""] if figure else []),
  ]


def matched_loss_section(t: Mapping) -> list[str]:
  ml = t["matched_loss"]
  if not ml:
    return ["No training loss in the results.", ""]
  rows = []
  for rule, e in ml["rules"].items():
    for metric in (*COMPARED, *t.get("extra_curvature", ())):
      if metric not in e:
        continue
      rows.append(
        [
          rule,
          t["lambda_metric"] or "lambda_max" if metric == "lambda" else metric,
          f"{e['reached']}/{e['runs']}",
          pm(e[metric]),
          *contrast_cells(e[metric].get("vs_bptt")),
        ]
      )
  remedy_rows = []
  for variant, per_rule in t["remedies"].items():
    for rule, e in per_rule.items():
      if "at_loss" not in e:
        continue
      for metric in ("gap_acc", "lambda"):
        remedy_rows.append(
          [
            variant,
            rule,
            t["lambda_metric"] or "lambda_max" if metric == "lambda" else metric,
            f"{e['at_loss']['reached']}/{e['runs']}",
            pm(e["at_loss"][metric]),
            *contrast_cells(e["at_loss"][metric]["vs_base"]),
          ]
        )
  if remedy_rows:
    remedy_rows = [
      "Remedies at the same training loss, against the same rule without them:",
      "",
      *table(
        [
          "variant",
          "rule",
          "metric",
          "reached",
          "mean ± sd",
          *BASE_HEADER,
        ],
        remedy_rows,
      ),
    ]
  chance = t.get("chance") or {}
  near = (
    f" Chance: loss {fmt(chance['loss'])}, score {fmt(chance['score'])}."
    if chance and math.isfinite(chance.get("loss", math.nan))
    else ""
  )
  return [
    f"Target training loss {fmt(ml['target'])}{near} (the highest of the rules' median final",
    "training losses); each run's values are interpolated linearly in its training loss",
    "between the two evaluations around its first crossing. Runs that never reach it are",
    "left out (reached/runs).",
    "",
    *table(
      [
        "rule",
        "metric",
        "reached",
        "mean ± sd",
        *CONTRAST_HEADER,
      ],
      rows,
    ),
    *remedy_rows,
  ]


def remedies_section(t: Mapping) -> list[str]:
  rows = []
  for variant, per_rule in t["remedies"].items():
    for rule, e in per_rule.items():
      for metric in ("gap_acc", "gap_loss", "lambda", "train_acc"):
        rows.append(
          [
            variant,
            rule,
            t["lambda_metric"] or "lambda_max" if metric == "lambda" else metric,
            f"{e['fit_ever']}/{e['runs']}",
            str(e["diverged"]),
            pm(e[metric]),
            *contrast_cells(e[metric]["vs_base"]),
          ]
        )
  if not rows:
    return ["No remedy variants were run.", ""]
  return table(
    [
      "variant",
      "rule",
      "metric",
      "fit/runs",
      "diverged",
      "mean ± sd",
      *BASE_HEADER,
    ],
    rows,
  )
