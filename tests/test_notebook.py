"""notebooks/quickstart.ipynb runs top to bottom (tiny generated corpus, tiny random Whisper)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKSTART_TINY", "1")  # the kernel inherits the environment
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()

    outputs = {
        i: "".join(o.get("text", "") for o in c.get("outputs", []))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    }
    text = "\n".join(outputs.values())
    assert "tiny generated corpus" in text
    assert "test/acc" in text
    # six predictions printed, each a known label with a confidence
    preds = [line for line in text.splitlines() if ".wav" in line and " -> " in line]
    assert len(preds) == 6 and all(line.split("->")[1].split()[0] in ("low", "mid", "high") for line in preds)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2, "the confusion matrix and the layer weights are drawn"
    assert "heaviest layer:" in text and (tmp_path / "run" / "confusion_matrix.json").is_file()
