"""``predict.py``: label (or transcribe) audio files with a checkpoint; CSV or JSON out."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from asr_transfer.data.audio import AudioError, check_header
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


def read_entries(files: list[str], data: DictConfig, bad_log: BadAudioLog) -> list[Entry]:
    """Header-check every input as the checkpoint's data config says (``data.on_bad_audio``,
    ``data.max_duration`` with ``data.long_audio``), the rule ``AudioDataModule`` applies to a manifest."""
    on_bad, max_duration = data.get("on_bad_audio", "error"), data.get("max_duration")
    entries = []
    for i, f in enumerate(files):
        entry = Entry(audio_filepath=f, duration=None, line=i + 1, manifest="inputs")
        try:
            entry.duration = check_header(f).duration
        except AudioError as err:
            if on_bad != "skip":
                raise AudioError(
                    err.path, err.reason, "predict.py inputs; data.on_bad_audio=skip leaves it out"
                ) from None
            bad_log.add(entry, "predict", err)
            continue
        if max_duration is not None and entry.duration > max_duration:
            if data.get("long_audio", "crop") == "skip":
                detail = f"{entry.duration:.1f} s > data.max_duration={max_duration}"
                bad_log.add(entry, "predict", AudioError(f, "too_long", detail))
                continue
            entry.duration = float(max_duration)
        entries.append(entry)
    return entries


def predict(cfg: DictConfig, bad_log: BadAudioLog | None = None) -> list[dict]:
    """One row per input file that was read (skipped ones are in ``bad_log``), in input order."""
    state = load_checkpoint(cfg.ckpt_path)
    # data=checkpoint (with any data.* overrides) or data=<corpus>: how audio is read, as in training
    train_cfg, backbone, _, task = restore(state, cfg.get("data") or None, task_overrides(cfg))
    data, bad_log = train_cfg.data, bad_log or BadAudioLog(None)
    entries = read_entries(collect_inputs(cfg.inputs), data, bad_log)
    max_duration = data.get("max_duration")
    max_samples = None if max_duration is None else int(max_duration * backbone.sample_rate)
    on_bad = data.get("on_bad_audio", "error")
    ds = AudioDataset(entries, "predict", backbone.sample_rate, None, max_samples, on_bad, bad_log)
    loader = DataLoader(
        ds,
        batch_sampler=LengthBatchSampler(ds.durations, batch_size=cfg.batch_size, shuffle=False),
        collate_fn=pad_batch,
    )
    rows: dict[int, dict] = {}
    with torch.inference_mode():
        for batch in loader:
            if batch is None:  # every clip of the batch failed to decode (skipped)
                continue
            for row in task.predict_rows(batch):
                i = row.pop("index")
                rows[i] = {"audio_filepath": entries[i].audio_filepath, **row}
    return [rows[i] for i in sorted(rows)]


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
    run_dir = output_dir(cfg)
    bad_log = BadAudioLog(run_dir / "bad_audio.jsonl")
    rows = predict(cfg, bad_log)
    bad = bad_log.summary()
    if bad:
        log.warning("skipped %d input(s) %s: listed in %s", sum(bad.values()), dict(bad), bad_log.path)
    if not rows:
        raise ValueError(f"inputs={cfg.inputs!r}: every file was skipped (see {bad_log.path})")
    out = Path(cfg.output) if cfg.get("output") else run_dir / "predictions.csv"
    write_predictions(rows, out)
    log.info("wrote %d predictions to %s", len(rows), out)
    return out
