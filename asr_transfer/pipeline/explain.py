"""``explain.py``: why a checkpoint decided what it did, on its own test split (edited by ``data.*``) or on
given files (``inputs=[clips or folder]``).

Level ``frames`` attributes with Captum through the featurizer and head, on the stored frames of a
frozen run (no backbone runs) or, when none are stored, on the frames the backbone computes once per
batch; level ``audio`` occludes time windows of the input audio through the backbone. Writes
``attributions/<clip>.{npz,png}`` for the worst and a few random test clips (every clip of ``inputs``),
``attributions/index.json``, and with ``faithfulness=true`` the deletion test ``faithfulness.{json,png}``.
A CTC run gets, per clip, the posteriorgram and an attribution per emitted token instead
(``interpret/ctc.py``); a backbone whose input is a spectrogram (Whisper's log-mel) adds the attribution
over time x frequency (``spectrogram=true``).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.data.audio import load_audio
from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.dataset import AudioDataset, BadAudioLog
from asr_transfer.interpret.attribute import AudioModel, FrameModel, frame_attributions, occlusion_over_time
from asr_transfer.interpret.faithfulness import beats_random, deletion_curve, write_faithfulness
from asr_transfer.interpret.figures import write_clip
from asr_transfer.pipeline.build import build_parts, task_class
from asr_transfer.pipeline.explain_extra import ctc_clip_files, spectrogram_files
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.pipeline.predict import collect_inputs, read_entries
from asr_transfer.pipeline.restore import restore, restore_config, restore_task
from asr_transfer.pipeline.results import output_dir
from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.errors import ConfigError

log = logging.getLogger(__name__)
LEVELS = ("frames", "audio")


def frames_of(task, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The featurizer's input frames (batch, layers, time, dim) and frame lengths: the stored ones, or
    the backbone's (run once, without gradients: the attribution starts at its output)."""
    if "features" in batch:
        if batch["features"].dim() != 4:
            raise ConfigError(
                "explain.py level=frames needs frames, but this run stored pooled vectors",
                fix="add use_cache=false (the backbone computes the frames) or level=audio",
            )
        return batch["features"], batch["frame_lengths"]
    with torch.no_grad():
        hidden, frame_lengths = task.backbone(batch["wavs"], batch["lengths"])
    return task.featurizer.select(hidden).transpose(0, 1), frame_lengths  # (batch, layers, time, dim)


def explain_batch(task, batch: dict, cfg: DictConfig, sample_rate: int) -> dict:
    """Attributions of one batch: {level, attr (B, steps), model, x, lengths, steps, step}."""
    if cfg.level not in LEVELS:
        raise ConfigError(f"level={cfg.level} is not one of {LEVELS}", fix="level=frames or level=audio")
    if cfg.level == "frames":
        x, lengths = frames_of(task, batch)
        model = FrameModel(task.featurizer, task.head)
        attr = frame_attributions(model, x, lengths, method=cfg.method)
        return {
            "level": "frames",
            "attr": attr,
            "model": model,
            "x": x,
            "lengths": lengths,
            "steps": lengths,
            "step": 1,
        }
    if "wavs" not in batch:
        raise ConfigError("explain.py level=audio runs the backbone on audio", fix="add use_cache=false")
    wavs, lengths = batch["wavs"], batch["lengths"]
    window = max(1, int(cfg.window_s * sample_rate))
    audio = AudioModel(task.backbone, task.featurizer, task.head).eval()
    attr = occlusion_over_time(audio, wavs, lengths, window)
    steps = (lengths + window - 1) // window
    return {
        "level": "audio",
        "attr": attr,
        "model": audio,
        "x": wavs,
        "lengths": lengths,
        "steps": steps,
        "step": window,
    }


def load_run(cfg: DictConfig, run_dir):
    """(task, run config, entries, loader, labels, sample rate): the checkpoint's test split, or the
    ``inputs``."""
    state = load_checkpoint(cfg.ckpt_path)
    if cfg.get("inputs"):
        if cfg.faithfulness:
            raise ConfigError(
                "faithfulness=true measures accuracy after deletion, but inputs= files have no labels",
                fix="drop faithfulness=true, or run it on a labelled split without inputs=",
            )
        train_cfg, parts, task = restore(state, cfg.get("data") or None)
        entries = read_entries(collect_inputs(cfg.inputs), parts.datamodule.rules, BadAudioLog(None))
        ds = AudioDataset(entries, "predict", parts.datamodule.rules, BadAudioLog(None))
        loader = DataLoader(
            ds,
            batch_sampler=LengthBatchSampler(ds.durations, batch_size=cfg.batch_size, shuffle=False),
            collate_fn=pad_batch,
        )
        return task, train_cfg, entries, loader, state_labels(state), parts.backbone.sample_rate
    train_cfg = restore_config(state, cfg.get("data") or None)
    reads_audio = not cfg.get("use_cache", True) or cfg.level == "audio"
    if reads_audio and train_cfg.get("features"):
        train_cfg.features.mode = "off"  # audio batches: the backbone runs
    parts = build_parts(
        train_cfg,
        make_plan(train_cfg, "test"),
        run_dir=str(run_dir),
        **task_class(train_cfg).checkpoint_data_kwargs(state),
    )
    dm = parts.datamodule
    dm.prepare_data()
    dm.setup("test")
    task = restore_task(train_cfg, parts, state)
    labels = list(dm.labels or [])
    return task, train_cfg, dm.entries["test"], dm.loader("test"), labels, parts.backbone.sample_rate


def state_labels(state: dict) -> list[str]:
    return list(state.get("hyper_parameters", {}).get("labels") or [])


def explain(cfg: DictConfig) -> dict:
    run_dir = output_dir(cfg)
    task, train_cfg, entries, loader, labels, sr = load_run(cfg, run_dir)
    if hasattr(task, "tokenizer"):  # CTC: posteriorgram and per-token attributions per clip
        return ctc_clip_files(task, entries, loader, cfg, run_dir, frames_of)
    clips, sums, n = [], None, 0
    for batch in loader:
        if batch is None:
            continue
        out = explain_batch(task, batch, cfg, sr)
        with torch.no_grad():
            probs = out["model"](out["x"], out["lengths"]).softmax(-1)
        truth = batch.get("labels")
        for i, idx in enumerate(batch["index"].tolist()):
            label = None if truth is None else int(truth[i])
            pred = int(probs[i].argmax())
            clips.append(
                {
                    "index": idx,
                    "label": label,
                    "pred": pred,
                    # the truth's probability; for unlabelled inputs, the answer's (least sure first)
                    "p": float(probs[i, pred if label is None else label]),
                    "attr": out["attr"][i, : int(out["steps"][i])].detach().cpu(),
                }
            )
        if cfg.faithfulness:
            curve = deletion_faithfulness(out, truth, cfg)
            k = len(truth)
            values = curve["attribution"] + curve["random"]
            sums = [a * k for a in values] if sums is None else [s + a * k for s, a in zip(sums, values)]
            n += k
    written = write_clips(run_dir, clips, entries, labels, sr, cfg)
    summary = {"level": out["level"], "method": cfg.method if out["level"] == "frames" else "occlusion"}
    if cfg.spectrogram:
        spectrogram_files(task, train_cfg, entries, written, run_dir, sr, cfg)
    summary["clips"] = written
    if cfg.faithfulness:
        m = len(cfg.shares)
        result = {
            "metric": "acc",
            "method": summary["method"],
            "deletion": cfg.deletion,
            "shares": [float(s) for s in cfg.shares],
            "attribution": [round(s / n, 4) for s in sums[:m]],
            "random": [round(s / n, 4) for s in sums[m:]],
        }
        result["beats_random"] = beats_random(result, share=min(cfg.shares, key=lambda s: abs(s - 0.2)))
        write_faithfulness(run_dir, result)
        summary["faithfulness"] = result
        log.info("deletion test: attribution %s, random %s", result["attribution"], result["random"])
    write_json(run_dir / "attributions" / "index.json", summary)
    log.info("attributions of %d clips in %s", len(written), run_dir / "attributions")
    return summary


def deletion_faithfulness(out: dict, labels, cfg: DictConfig) -> dict:
    """The deletion curve of one batch: stored frames delete frames, audio whole occlusion windows."""
    time_dim = 2 if out["level"] == "frames" else 1
    return deletion_curve(
        out["model"],
        out["x"],
        out["lengths"],
        labels,
        out["attr"],
        time_dim,
        cfg.shares,
        cfg.seed,
        mode=cfg.deletion,
        step=out["step"],
    )


def chosen_clips(clips: list[dict], cfg: DictConfig) -> list[tuple[str, dict]]:
    """(kind, clip): every given input; of a test split, the ``worst`` least confident in their true
    label and ``random`` others (seeded)."""
    if cfg.get("inputs"):
        return [("input", c) for c in sorted(clips, key=lambda c: c["index"])]
    order = sorted(clips, key=lambda c: c["p"])
    rest = order[cfg.worst :]
    drawn = random.Random(cfg.seed).sample(rest, min(cfg.random, len(rest)))
    return [("worst", c) for c in order[: cfg.worst]] + [("random", c) for c in drawn]


def write_clips(
    run_dir, clips: list[dict], entries, labels: list[str], sr: int, cfg: DictConfig
) -> list[dict]:
    """PNG + npz per chosen clip; the rows of ``attributions/index.json``."""
    rows = []
    for kind, c in chosen_clips(clips, cfg):
        entry = entries[c["index"]]
        wav = load_audio(entry.audio_filepath, sr, offset=entry.offset or 0.0, duration=entry.duration)
        name = f"{c['index']:05d}"
        pred = labels[c["pred"]] if labels else str(c["pred"])
        truth = "" if c["label"] is None else f"true {labels[c['label']]}, "
        title = f"{kind}: {truth}predicted {pred} (p{'_true' if truth else ''} {c['p']:.2f})"
        _, png = write_clip(run_dir / "attributions", name, c["attr"].numpy(), len(wav) / sr, title, wav, sr)
        row = {
            "clip": name,
            "kind": kind,
            "audio_filepath": entry.audio_filepath,
            "png": png.name,
            "pred": pred,
        }
        row["title"] = f"{kind}: {Path(entry.audio_filepath).name}, {truth}predicted {pred}"
        if c["label"] is not None:
            row.update({"true": labels[c["label"]], "p_true": round(c["p"], 4)})
        rows.append(row)
    return rows
