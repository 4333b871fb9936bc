"""The report's "why it decided that" section: what ``explain.py`` and ``python -m asr_transfer.drift``
left in the run directory (attribution PNGs, the deletion test, per-layer drift), embedded as data URIs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from asr_transfer.report.rundir import read_csv


def png_uri(path: Path) -> str | None:
    data = path.read_bytes() if path.is_file() else b""
    if not data.startswith(b"\x89PNG"):  # absent or not a PNG: no broken image in the page
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def interpret_context(run: Path) -> dict:
    """{"clips": [{title, uri}], "faithfulness": {...} | None, "faithfulness_png", "drift": rows, "drift_png"}."""
    index = run / "attributions" / "index.json"
    clips = []
    if index.is_file():
        for c in json.loads(index.read_text()).get("clips", []):
            true = f", true {c['true']}" if "true" in c else ""  # absent for explained files (inputs=)
            name = Path(c["audio_filepath"]).name
            title = c.get("title") or f"{c['kind']}: {name}{true}, predicted {c['pred']}"
            for key, what in (("png", ""), ("png_tf", " (time x frequency)")):  # png_tf: spectrogram=true
                uri = png_uri(run / "attributions" / c[key]) if c.get(key) else None
                if uri:
                    clips.append({"title": title + what, "uri": uri})
    faith = run / "faithfulness.json"
    drift = run / "drift.csv"
    return {
        "clips": clips,
        "faithfulness": json.loads(faith.read_text()) if faith.is_file() else None,
        "faithfulness_png": png_uri(run / "faithfulness.png"),
        "drift": read_csv(drift) if drift.is_file() else [],
        "drift_png": png_uri(run / "drift.png"),
    }
