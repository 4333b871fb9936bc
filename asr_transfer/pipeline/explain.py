"""``explain.py``: why a checkpoint decided what it did, on its own test split (edited by ``data.*``).

Level ``frames`` (stored frames of a frozen run: no backbone runs) attributes with Captum through the
featurizer and head; level ``audio`` occludes time windows of the input audio through the backbone.
Writes ``attributions/<clip>.{npz,png}`` for the worst and a few random test clips,
``attributions/index.json``, and with ``faithfulness=true`` the deletion test ``faithfulness.{json,png}``.
"""

from __future__ import annotations

import logging
import random

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.data.audio import load_audio
from asr_transfer.interpret.attribute import AudioModel, FrameModel, frame_attributions, occlusion_over_time
from asr_transfer.interpret.faithfulness import beats_random, deletion_curve, write_faithfulness
from asr_transfer.interpret.figures import write_clip
from asr_transfer.pipeline.build import build_parts, task_class
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.pipeline.restore import restore_config, restore_task
from asr_transfer.pipeline.results import output_dir
from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.errors import ConfigError

log = logging.getLogger(__name__)


class WindowedAudio(torch.nn.Module):
    """The audio model on ``(batch, windows, window)`` views, so deletion masks whole occlusion windows."""

    def __init__(self, model: AudioModel, samples: int) -> None:
        super().__init__()
        self.model, self.samples = model, samples

    def forward(self, x, lengths):
        return self.model(x.flatten(1)[:, : self.samples], lengths)


def explain_batch(task, batch: dict, cfg: DictConfig, sample_rate: int) -> dict:
    """Attributions of one batch: {level, attr (B, T), model, x, lengths, time_dim, seconds_per_step}."""
    if "features" in batch:
        if batch["features"].dim() != 4:
            raise ConfigError(
                "explain.py on stored features needs frames, but this run stored pooled vectors",
                fix="rerun with use_cache=false (level audio, through the backbone) or train with head=attentive",
            )
        model, x, lengths = FrameModel(task.featurizer, task.head), batch["features"], batch["frame_lengths"]
        attr = frame_attributions(model, x, lengths, method=cfg.method)
        return {"level": "frames", "attr": attr, "model": model, "x": x, "lengths": lengths, "steps": lengths}
    wavs, lengths = batch["wavs"], batch["lengths"]
    window = max(1, int(cfg.window_s * sample_rate))
    audio = AudioModel(task.backbone, task.featurizer, task.head).eval()
    attr = occlusion_over_time(audio, wavs, lengths, window)
    pad = attr.shape[1] * window - wavs.shape[1]
    x = F.pad(wavs, (0, pad)).view(wavs.shape[0], attr.shape[1], window)
    win_lengths = (lengths + window - 1) // window
    return {
        "level": "audio",
        "attr": attr,
        "model": WindowedAudio(audio, wavs.shape[1]),
        "x": x,
        "lengths": lengths,
        "attr_lengths": win_lengths,
        "steps": win_lengths,
    }


def explain(cfg: DictConfig) -> dict:
    run_dir = output_dir(cfg)
    state = load_checkpoint(cfg.ckpt_path)
    train_cfg = restore_config(state, cfg.get("data") or None)
    if not cfg.get("use_cache", True) and train_cfg.get("features"):
        train_cfg.features.mode = "off"
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
    sr = parts.backbone.sample_rate
    entries = dm.entries["test"]
    clips, sums, n = [], None, 0
    for batch in dm.loader("test"):
        out = explain_batch(task, batch, cfg, sr)
        with torch.no_grad():
            probs = out["model"](out["x"], out["lengths"]).softmax(-1)
        labels = batch["labels"]
        for i, idx in enumerate(batch["index"].tolist()):
            clips.append(
                {
                    "index": idx,
                    "label": int(labels[i]),
                    "pred": int(probs[i].argmax()),
                    "p_true": float(probs[i, labels[i]]),
                    "attr": out["attr"][i, : int(out["steps"][i])].detach().cpu(),
                }
            )
        if cfg.faithfulness:
            curve = deletion_faithfulness(out, labels, cfg)
            k = len(labels)
            sums = (
                [a * k for a in curve["attribution"] + curve["random"]]
                if sums is None
                else [s + a * k for s, a in zip(sums, curve["attribution"] + curve["random"])]
            )
            n += k
    written = write_clips(run_dir, clips, entries, dm.labels, sr, cfg)
    summary = {
        "level": out["level"],
        "method": cfg.method if out["level"] == "frames" else "occlusion",
        "clips": written,
    }
    if cfg.faithfulness:
        m = len(cfg.shares)
        result = {
            "metric": "acc",
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
    """The deletion curve of one batch; audio deletes whole occlusion windows (lengths in windows)."""
    if out["level"] == "frames":
        return deletion_curve(
            out["model"], out["x"], out["lengths"], labels, out["attr"], 2, cfg.shares, cfg.seed
        )
    model, total = out["model"], out["lengths"]
    return deletion_curve(
        lambda x, _: model(x, total),
        out["x"],
        out["attr_lengths"],
        labels,
        out["attr"],
        1,
        cfg.shares,
        cfg.seed,
    )


def write_clips(
    run_dir, clips: list[dict], entries, labels: list[str], sr: int, cfg: DictConfig
) -> list[dict]:
    """PNG + npz for the ``worst`` least confident-in-the-truth clips and ``random`` others (seeded)."""
    order = sorted(clips, key=lambda c: c["p_true"])
    chosen = order[: cfg.worst]
    rest = order[cfg.worst :]
    chosen += random.Random(cfg.seed).sample(rest, min(cfg.random, len(rest)))
    rows = []
    for kind, c in zip(["worst"] * cfg.worst + ["random"] * cfg.random, chosen):
        entry = entries[c["index"]]
        wav = load_audio(entry.audio_filepath, sr, offset=entry.offset or 0.0, duration=entry.duration)
        seconds = len(wav) / sr
        name = f"{c['index']:05d}"
        title = f"{kind}: true {labels[c['label']]}, predicted {labels[c['pred']]} (p_true {c['p_true']:.2f})"
        _, png = write_clip(run_dir / "attributions", name, c["attr"].numpy(), seconds, title, wav, sr)
        rows.append(
            {
                "clip": name,
                "kind": kind,
                "audio_filepath": entry.audio_filepath,
                "png": png.name,
                "true": labels[c["label"]],
                "pred": labels[c["pred"]],
                "p_true": round(c["p_true"], 4),
            }
        )
    return rows
