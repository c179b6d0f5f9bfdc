"""Every notebook in notebooks/ runs top to bottom in a kernel on this venv's Python."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "nbexplain-tests"
CELL_TIMEOUT = 120


def venv_kernel(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs *this* interpreter (the venv's), found first on JUPYTER_PATH.

    The installed ``python3`` spec says ``python``, which is whatever is on PATH, not
    necessarily the venv the tests run in.
    """
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nbexplain tests", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(folder))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


def test_there_are_notebooks():
    assert (ROOT / "notebooks" / "01_quickstart.ipynb") in NOTEBOOKS


def test_the_index_lists_every_notebook_once():
    index = nbformat.read(ROOT / "notebooks" / "00_index.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in index.cells)
    others = [path.name for path in NOTEBOOKS if path.name != "00_index.ipynb"]
    assert len(others) >= 3
    assert {name: text.count(f"]({name})") for name in others} == dict.fromkeys(others, 1)


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kernel = venv_kernel(tmp_path, monkeypatch)
    notebook = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    client = nbclient.NotebookClient(notebook, kernel_name=kernel, timeout=CELL_TIMEOUT, resources=resources)
    client.execute()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{path.name}: {output.get('ename')}"
