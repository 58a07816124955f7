"""Every notebook runs top to bottom in its small setting, and is committed with the full setting's outputs."""

import json
from pathlib import Path

import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def code_cells(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in cells:  # nbformat stores a cell's source as one string or as a list of lines
        cell["source"] = "".join(cell["source"])
    return cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_with_the_full_settings_outputs(path):
    cells = code_cells(path)
    outputs = [o for c in cells for o in c.get("outputs", [])]
    assert all(o["output_type"] != "error" for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs), "commit the notebook with its plots"
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "SMALL=False" in text, "the committed outputs must come from the full setting (LIT_GPT5_SMALL=0)"
    # Everything is called from the package: no model, data or training code of its own.
    assert not any(line.lstrip().startswith("class ") for c in cells for line in c["source"].splitlines())


def entries(folder: Path) -> set[Path]:
    return set(folder.iterdir()) | set((folder / "runs").glob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_in_the_small_setting(path, shared_dir, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LIT_GPT5_SMALL", "1")
    monkeypatch.setenv("LIT_GPT5_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LIT_GPT5_SHARED", str(shared_dir))
    # Nothing new beside the notebooks or in notebooks/runs/ (where a study running beside the suite keeps its own).
    before = entries(path.parent)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert entries(path.parent) == before
