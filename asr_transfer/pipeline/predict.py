"""``predict.py``: label (or transcribe) audio files with a checkpoint; CSV or JSON out."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.data.audio import audio_files
from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.checks import ClipRules
from asr_transfer.data.dataset import AudioDataset, BadAudioLog
from asr_transfer.data.leakage import overlap
from asr_transfer.data.manifest import Entry
from asr_transfer.pipeline.restore import restore, task_overrides
from asr_transfer.pipeline.results import output_dir
from asr_transfer.utils.atomic import write_csv, write_json
from asr_transfer.utils.jsonl import write_jsonl

log = logging.getLogger(__name__)


def collect_inputs(inputs) -> list[str]:
    """``inputs``: one path or a list; folders are searched recursively for audio files."""
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    files: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += [str(f) for f in audio_files(p)]
        else:
            files.append(str(p))
    if not files:
        raise FileNotFoundError(f"inputs={inputs!r}: no audio files found")
    return files


def read_entries(files: list[str], rules: ClipRules, bad_log: BadAudioLog) -> list[Entry]:
    """Header-check every input with the checkpoint's data rules (``data.on_bad_audio``,
    ``data.max_duration`` with ``data.long_audio``): ``ClipRules.keep``, as the datamodule does."""
    entries = [Entry(audio_filepath=f, line=i + 1, manifest="inputs") for i, f in enumerate(files)]
    where = "predict.py inputs"
    return rules.keep(entries, "predict", bad_log, lambda e: where)


def predict(cfg: DictConfig, bad_log: BadAudioLog | None = None) -> list[dict]:
    """One row per input file that was read (skipped ones are in ``bad_log``), in input order."""
    state = load_checkpoint(cfg.ckpt_path)
    # data=checkpoint (with any data.* overrides) or data=<corpus>: how audio is read, as in training
    # the datamodule gives the run's clip rules: the backbone's rate and minimum length, the data
    # config's bad/long-audio policy
    _, parts, task = restore(state, cfg.get("data") or None, task_overrides(cfg))
    backbone = parts.backbone
    if cfg.get("adapter", {}).get("merge"):
        # the backbone's adapter, and the head's where it has one (Whisper's decoder: decoder_adapter=lora)
        adapted = [m for m in (backbone, task.head) if getattr(m, "adapter", None) is not None]
        if not adapted:
            raise ValueError(f"adapter.merge=true: {cfg.ckpt_path} was trained without an adapter")
        for module in adapted:
            module.adapter.merge(module)  # same outputs, without the adapter's extra matmuls
    rules, bad_log = parts.datamodule.rules, bad_log or BadAudioLog(None)
    entries = read_entries(collect_inputs(cfg.inputs), rules, bad_log)
    leak = overlap(state["asr_transfer"].get("training_data"), entries, "inputs")
    if leak:
        log.warning("%s", leak)
    ds = AudioDataset(entries, "predict", rules, bad_log)
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
    order = sorted(rows)
    with torch.inference_mode():
        extra = task.predict_files([rows[i] for i in order], [entries[i] for i in order], cfg)
    for name, content in extra.items():  # beside the predictions (e.g. a trials file's scores)
        write_jsonl(output_dir(cfg) / name, content)
        log.info("wrote %s", output_dir(cfg) / name)
    return [rows[i] for i in order]


def write_predictions(rows: list[dict], path: Path) -> None:
    if path.suffix.lower() == ".json":
        write_json(path, rows, indent=1, sort_keys=False)
    else:
        write_csv(path, rows)


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
    log.info("wrote %d predictions to %s (log in %s)", len(rows), out, run_dir)
    return out
