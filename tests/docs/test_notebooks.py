"""The example notebooks in docs/notebooks run from top to bottom (small mode).

Each jupytext percent script is converted to a notebook and executed in a
Jupyter kernel, as a reader would, with ``ABM_NOTEBOOK_SMALL=1`` (a tiny
lattice, two days, a few patients), the Agg backend, and its batch folders
and figures in a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.py"))


def test_the_three_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == ["one_patient", "tumour_burden", "virtual_trial"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    figures.mkdir()
    # the kernel inherits this process's environment
    monkeypatch.setenv("ABM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("ABM_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("ABM_NOTEBOOK_FIGURES", str(figures))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert list(figures.glob("*.png")), "the notebook saved no figure"
