"""No module imports a layer above its own (checked over the import graph, statically).

The layers, lowest first, follow what the code does:

0. foundation: ``credit`` (runtime settings), ``errors``, ``losses``, ``cli`` and
   ``analysis.stats`` (pure functions over tidy rows, no credit import);
1. ``data``; 2. ``models``; 3. ``tasks`` (batches, losses, scores);
4. ``rules`` (gradients from the model's trajectory on a task's batch), and
   ``training.optimizers`` (optax optimizers, their stability thresholds and
   preconditioners; no credit import);
5. ``curvature`` (HVPs of the exact loss, preconditioned by the optimizer's state
   for adaptive optimizers);
6. ``training.objective``: the loss-and-gradient of a step, which the theory
   linearizes;
7. ``theory`` (the update map of a rule, its stability bound, their probe);
8. ``training`` (the compiled loop: it runs the curvature and theory probes and
   the remedies);
9. ``sweeps``; 10. ``analysis`` (figures and matched fit over results files);
11. ``reproduction`` (the reproduction's sweeps and its report).

Function-level imports count too: a deferred import is still a dependency.
The training loop sits above the theory because it runs the theory probe
(``training/probes.py``); the remedies moved from ``theory`` to ``training``
because they are part of the training step, not of the argument's math.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = (
  (
    "credit",
    "credit.runtime",
    "credit.errors",
    "credit.losses",
    "credit.cli",
    "credit.analysis.stats",
  ),
  ("credit.data",),
  ("credit.models",),
  ("credit.tasks",),
  ("credit.rules", "credit.training.optimizers"),
  ("credit.curvature",),
  ("credit.training.objective",),
  ("credit.theory",),
  ("credit.training",),
  ("credit.sweeps",),
  ("credit.analysis",),
  ("credit.reproduction",),
)
# Known upward imports, each with why it is still there (none today).
ALLOWED: set[tuple[str, str]] = set()


def layer(module: str) -> int:
  """The layer of ``module``: its longest declared prefix."""
  best, depth = None, -1
  for i, names in enumerate(LAYERS):
    for name in names:
      if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
        best, depth = i, name.count(".")
  if best is None or (depth == 0 and module not in LAYERS[0]):
    raise AssertionError(f"{module} is in no declared layer: add it to LAYERS")
  return best


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
  return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path: str):
  """``(line, imported module)`` for every credit import in a file, at any depth."""
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("credit"):
          yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("credit"):
      for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        is_module = os.path.exists(os.path.join(REPO, *sub.split(".")) + ".py") or os.path.isdir(
          os.path.join(REPO, *sub.split("."))
        )
        yield node.lineno, sub if is_module else node.module


def import_graph():
  edges = []
  for folder, _, files in os.walk(os.path.join(REPO, "credit")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        for line, target in _imports(path):
          edges.append((_module_name(path), target, line))
  return edges


def upward(edges) -> list[str]:
  """The edges that import a higher layer (less the allowed ones), as messages."""
  return [
    f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)}) at line {line}"
    for src, dst, line in edges
    if layer(dst) > layer(src) and (src, dst) not in ALLOWED
  ]


def test_no_module_imports_a_layer_above_its_own():
  edges = import_graph()
  assert len(edges) > 50  # the walk found the package
  bad = upward(edges)
  assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_the_check_finds_an_upward_import():
  edges = [
    ("credit.models.rnn", "credit.training.train", 3),  # a model importing the loop
    ("credit.theory.stability", "credit.sweeps.runner", 4),
    ("credit.training.remedies", "credit.training.objective", 5),  # fine: a lower layer
  ]
  assert [m.split(" (")[0] for m in upward(edges)] == [
    "credit.models.rnn",
    "credit.theory.stability",
  ]


def test_every_allowed_exception_is_still_needed():
  edges = {(src, dst) for src, dst, _ in import_graph()}
  assert ALLOWED <= edges, f"no longer imported, remove from ALLOWED: {ALLOWED - edges}"


def test_training_no_longer_depends_on_the_theory_for_its_remedies():
  train = os.path.join(REPO, "credit", "training", "train.py")
  assert "credit.training.remedies" in {dst for _, dst in _imports(train)}
  assert layer("credit.training.remedies") == layer("credit.training.train")
