"""Each notebook runs top to bottom in smoke mode (``CREDIT_SMOKE=1``); none stores outputs.

Each notebook runs in a fresh ``python3`` kernel (nbclient) started in
``notebooks/``, so its first cell finds the repository as a colab user would
find an installed package.
"""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks"
)
NOTEBOOKS = ("quickstart.ipynb", "curvature.ipynb", "results.ipynb")


def _read(name):
  return nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
  notebook = _read(name)
  nbformat.validate(notebook)
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
        f"{name} is saved with outputs: clear them before committing"
      )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name, monkeypatch):
  monkeypatch.setenv("CREDIT_SMOKE", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("CREDIT_SWEEP_WORKDIR", raising=False)
  monkeypatch.setenv("MPLBACKEND", "Agg")
  client = NotebookClient(
    _read(name),
    timeout=300,
    kernel_name="python3",
    resources={"metadata": {"path": NOTEBOOK_DIR}},
  )
  client.execute()
