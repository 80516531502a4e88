r"""The verdict protocol of a report, declared before the data are seen.

A reproduction config carries it as ``claims`` (:func:`default`, validated by
:func:`validate`); ``experiments.reproduce`` writes it to ``<workdir>/claims.json``
before its first sweep runs and refuses a workdir whose declared protocol differs,
so that margins, families, operating points and gap units cannot be changed after
the results are in. ``experiments.report`` reads that file (:func:`load`); a workdir
without one (a plain sweep) is judged by :func:`default`, and the report says so.

Fields:

* ``alpha``: the family-wise level of every family (Holm within each claim);
* ``power``: the power at which the minimum detectable effect (MDE) is given;
* ``primary``: the claims of the paper tested confirmatorily (one-sided, Holm within
  each claim across tasks x rules); the others (``more_variable``, ``theory``,
  ``remedies``, ``fit``) are secondary families, each corrected within itself;
* ``headline``: the operating point of the verdicts: ``window`` (each run's mean over
  its evaluations from its first fit to first fit + ``window`` of the training
  budget), ``first_fit`` or ``last_quarter`` (its mean over the last ``last`` of the
  budget); all three are reported;
* ``gap_unit``: per task the primary gap, one of :data:`GAP_UNITS` (``default`` for a
  task not named), with ``gap_unit_reason`` saying why;
* ``gap_margin``: per gap unit the equivalence margin, ``max(absolute, relative x
  |the reference's median gap|)`` at the same operating point (BPTT's; for a remedy, the
  same rule's without it);
* ``lambda_margin``: λ_max's equivalence margin as a ratio (±log of it in log space);
* ``correlation_margin``: the partial rank r within which the relation counts as absent;
* ``chance``: per task the score and loss of a network at chance (``loss`` NaN when
  it has no closed form, e.g. a regression's MSE); ``chance_margin``: a matched point
  within this fraction of chance (loss ≥ (1 − m) chance loss, or score ≤ chance +
  m (1 − chance)) is not tested;
* ``min_reference_fits``: fewer BPTT runs that fit than this, and the task's
  contrasts against BPTT are not tested.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

from credit.errors import ConfigError, UnknownFieldError

import ml_collections

FILE = "claims.json"
CLAIM_KEYS = ("worse_gap", "more_variable", "correlation", "sharper", "theory", "remedies", "fit")
PRIMARY = ("worse_gap", "sharper", "correlation")
OPERATING_POINTS = ("window", "first_fit", "last_quarter")
# Each operating point's block in a task's numbers (:mod:`credit.reproduction.numbers`).
POINT_BLOCKS = {"first_fit": "matched", "window": "window", "last_quarter": "last"}
# raw: train - shifted test score; normalized: (train - test) / (train - chance), the
# fraction of the above-chance score lost to the shift; clean: train - clean test score.
GAP_UNITS = ("gap_acc", "gap_norm", "gap_clean")
LN2, LN10 = math.log(2.0), math.log(10.0)
CHANCE = {
  "seq_mnist": {"score": 0.1, "loss": LN10},
  "delayed_match_to_sample": {"score": 0.5, "loss": LN2},
  "evidence_accumulation": {"score": 0.5, "loss": LN2},
  # R^2 of predicting the mean; its MSE depends on the target's variance (no closed form).
  "pattern_generation": {"score": 0.0, "loss": math.nan},
}
GAP_UNIT_REASON = (
  "the raw gap (train − shifted-test score) is the paper's definition; in the window after "
  "fit every run compared has met the task's fit criterion, so there the chance-normalized "
  "gap is the raw gap over a nearly constant (train − chance), and at a matched training "
  "loss both rules stand at the same loss; the normalized and clean-test gaps are reported "
  "beside it, never used for a verdict"
)


def default() -> ml_collections.ConfigDict:
  """The protocol every committed report declares (module docstring)."""
  return ml_collections.ConfigDict(
    {
      "alpha": 0.05,
      "power": 0.8,
      "primary": PRIMARY,
      "headline": "window",
      "window": 0.25,
      "last": 0.25,
      "gap_unit": {"default": "gap_acc"},
      "gap_unit_reason": GAP_UNIT_REASON,
      "gap_margin": {
        "gap_acc": {"absolute": 0.02, "relative": 0.25},
        "gap_clean": {"absolute": 0.02, "relative": 0.25},
        "gap_norm": {"absolute": 0.05, "relative": 0.25},
      },
      "lambda_margin": 1.25,
      "correlation_margin": 0.2,
      "chance": CHANCE,
      "chance_margin": 0.1,
      "min_reference_fits": 2,
    }
  )


def _fraction(p: Mapping, name: str, low: float = 0.0, high: float = 1.0) -> None:
  v = p[name]
  if isinstance(v, bool) or not isinstance(v, int | float) or not low < v < high:
    raise ConfigError(f"claims.{name} must be a number in ({low:g}, {high:g}), got {v!r}")


def validate(p: Mapping) -> None:
  """Refuses an unknown field, a value out of range or an unknown claim, unit or point.

  Raises:
    UnknownFieldError: a field :func:`default` does not have.
    ConfigError: any other bad value, naming the field.
  """
  known = default()
  unknown = sorted(set(p) - set(known))
  if unknown:
    raise UnknownFieldError(f"claims has unknown fields {unknown}; known: {sorted(known)}")
  for name in ("alpha", "power", "window", "last", "chance_margin", "correlation_margin"):
    _fraction(p, name)
  if not isinstance(p["lambda_margin"], int | float) or not p["lambda_margin"] > 1:
    raise ConfigError(f"claims.lambda_margin must be a ratio above 1, got {p['lambda_margin']!r}")
  bad = [c for c in p["primary"] if c not in CLAIM_KEYS]
  if bad:
    raise ConfigError(f"claims.primary names unknown claims {bad}; known: {list(CLAIM_KEYS)}")
  if p["headline"] not in OPERATING_POINTS:
    raise ConfigError(
      f"claims.headline must be one of {list(OPERATING_POINTS)}, got {p['headline']!r}"
    )
  for task, unit in dict(p["gap_unit"]).items():
    if unit not in GAP_UNITS:
      raise ConfigError(f"claims.gap_unit.{task} must be one of {list(GAP_UNITS)}, got {unit!r}")
  if "default" not in p["gap_unit"]:
    raise ConfigError("claims.gap_unit needs a 'default' unit for the tasks it does not name")
  for unit in GAP_UNITS:
    m = dict(p["gap_margin"]).get(unit)
    if not m or set(m) != {"absolute", "relative"} or min(m.values()) < 0:
      raise ConfigError(
        f"claims.gap_margin.{unit} must be {{absolute: >= 0, relative: >= 0}}, got {m!r}"
      )
  for task, c in dict(p["chance"]).items():
    if set(c) != {"score", "loss"} or not math.isfinite(float(c["score"])):
      raise ConfigError(f"claims.chance.{task} must be {{score: finite, loss: number}}, got {c!r}")
  if not isinstance(p["min_reference_fits"], int) or p["min_reference_fits"] < 2:
    raise ConfigError(
      f"claims.min_reference_fits must be an integer >= 2, got {p['min_reference_fits']!r}"
    )


def as_dict(p: Mapping) -> dict:
  """The protocol as plain JSON values (tuples as lists, NaN kept as NaN)."""
  raw = p.to_dict() if hasattr(p, "to_dict") else dict(p)
  return json.loads(json.dumps(raw))


def headline_block(p: Mapping) -> str:
  """The numbers' block of the protocol's headline operating point."""
  return POINT_BLOCKS[p["headline"]]


def gap_unit(p: Mapping, task: str) -> str:
  """The primary gap of ``task``."""
  units = p["gap_unit"]
  return units[task] if task in units else units["default"]


def chance(p: Mapping, task: str) -> dict | None:
  """``{score, loss}`` at chance for ``task``, or None when the protocol does not say."""
  c = p["chance"].get(task) if hasattr(p["chance"], "get") else None
  return dict(c) if c else None


def load(workdir: str) -> tuple[dict, bool]:
  """The workdir's declared protocol and True, else :func:`default` and False."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return as_dict(default()), False
  try:
    with open(path) as f:
      p = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is not a readable claims protocol: {e}") from e
  validate(p)
  return p, True


def declare(workdir: str, p: Mapping) -> str:
  """Writes ``claims.json`` into ``workdir``, or checks that the one there is the same.

  Raises:
    ConfigError: the workdir declared another protocol (a report may not change its
      verdict rules once results exist).
  """
  validate(p)
  want = as_dict(p)
  path = os.path.join(workdir, FILE)
  if os.path.exists(path):
    have, _ = load(workdir)
    if json.dumps(have, sort_keys=True) != json.dumps(want, sort_keys=True):
      raise ConfigError(
        f"{path} declares another claims protocol than the config's: the verdict rules are "
        "fixed before the results are seen. Use a new workdir, or delete that file if no "
        "results have been read yet."
      )
    return path
  os.makedirs(workdir, exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(want, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return path
