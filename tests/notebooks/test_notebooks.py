"""The teaching notebooks in notebooks/ run from top to bottom, and check what they claim.

Each notebook is executed in a fresh Jupyter kernel with nbclient (what nbmake does), with the
notebooks folder as its working directory, as a reader would run it. An exception in any cell
fails the test, and that includes the notebooks' own ``assert`` cells, which hold the model to
the claims made in the text. ``timeout`` is nbclient's limit per cell, a guard against a hang.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = {"load_balancing.ipynb", "health_checks.ipynb", "caching.ipynb", "replication.ipynb",
            "monitoring_bugs.ipynb", "capacity_planning.ipynb", "chaos_campaign.ipynb"}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_without_an_error(path, monkeypatch):
    # the kernel is a child process: make sure it imports this checkout's `sim`
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = read(path)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert all(c.execution_count is not None for c in code_cells(nb) if c.source.strip())


def test_the_four_teaching_notebooks_are_there():
    assert {p.name for p in PATHS} >= EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_checks_a_claim_with_an_assert(path):
    sources = [c.source for c in code_cells(read(path))]
    assert any(re.search(r"^assert ", s, re.MULTILINE) for s in sources)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_stored_without_outputs(path):
    cells = code_cells(read(path))
    assert [c.outputs for c in cells if c.outputs] == []
    assert [c.execution_count for c in cells if c.execution_count is not None] == []


def test_readme_lists_every_notebook():
    readme = (NOTEBOOKS / "README.md").read_text()
    listed = set(re.findall(r"\(([\w-]+\.ipynb)\)", readme))
    assert listed == {p.name for p in PATHS}
