"""``predict.py``: label (or transcribe) audio files with a checkpoint; CSV or JSON out."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from asr_transfer.data.audio import check_header
from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.dataset import AudioDataset, BadAudioLog
from asr_transfer.data.manifest import Entry
from asr_transfer.pipeline.build import output_dir
from asr_transfer.pipeline.checkpoint import load_checkpoint, restore, task_overrides

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64", ".caf", ".mp3", ".opus"}


def collect_inputs(inputs) -> list[str]:
    """``inputs``: one path or a list; folders are searched recursively for audio files."""
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    files: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files.append(str(p))
    if not files:
        raise FileNotFoundError(f"inputs={inputs!r}: no audio files found")
    return files


def predict(cfg: DictConfig) -> list[dict]:
    state = load_checkpoint(cfg.ckpt_path)
    _, backbone, _, task = restore(state, task_overrides=task_overrides(cfg))
    files = collect_inputs(cfg.inputs)
    entries = [
        Entry(audio_filepath=f, duration=check_header(f).duration, line=i + 1, manifest="inputs")
        for i, f in enumerate(files)
    ]
    ds = AudioDataset(entries, "predict", backbone.sample_rate, None, None, "error", BadAudioLog(None))
    loader = DataLoader(
        ds,
        batch_sampler=LengthBatchSampler(ds.durations, batch_size=cfg.batch_size, shuffle=False),
        collate_fn=pad_batch,
    )
    rows: list[dict] = [{} for _ in files]
    with torch.inference_mode():
        for batch in loader:
            for row in task.predict_rows(batch):
                i = row.pop("index")
                rows[i] = {"audio_filepath": files[i], **row}
    return rows


def write_predictions(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=1))
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run(cfg: DictConfig) -> Path:
    rows = predict(cfg)
    out = Path(cfg.output) if cfg.get("output") else output_dir(cfg) / "predictions.csv"
    write_predictions(rows, out)
    log.info("wrote %d predictions to %s", len(rows), out)
    return out
