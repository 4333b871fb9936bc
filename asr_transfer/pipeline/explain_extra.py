"""``explain.py``'s per-clip extras: time x frequency attributions (``spectrogram=true``) and the CTC
explanation (posteriorgram + an attribution per emitted token), written beside the clip files."""

from __future__ import annotations

import logging

import numpy as np
import torch
from omegaconf import DictConfig

from asr_transfer.data.audio import load_audio
from asr_transfer.features.card import CardBackbone
from asr_transfer.interpret.attribute import AudioModel, FrameModel
from asr_transfer.interpret.ctc import ctc_figure, emitted_tokens, posteriorgram, token_attributions
from asr_transfer.interpret.figures import log_mel
from asr_transfer.interpret.spectrogram import band_edges, occlusion_time_frequency
from asr_transfer.pipeline.build import build_backbone
from asr_transfer.utils.atomic import atomic_path, write_json

log = logging.getLogger(__name__)


def audio_model(task, train_cfg: DictConfig) -> AudioModel:
    """The whole model on audio; a run on stored features has only the backbone's card, so its frozen
    (pretrained, as stored) backbone is built here."""
    backbone = build_backbone(train_cfg) if isinstance(task.backbone, CardBackbone) else task.backbone
    return AudioModel(backbone, task.featurizer, task.head).eval()


def spectrogram_files(task, train_cfg, entries, rows: list[dict], run_dir, sr: int, cfg: DictConfig) -> None:
    """``<clip>_tf.{npz,png}`` for each written clip: occlusion over (mel band, time window) cells."""
    from matplotlib.figure import Figure

    model = audio_model(task, train_cfg)
    edges = band_edges(cfg.bands, sr).tolist()
    for row in rows:
        e = entries[int(row["clip"])]
        wav = load_audio(e.audio_filepath, sr, offset=e.offset or 0.0, duration=e.duration)
        attr = occlusion_time_frequency(model, torch.as_tensor(wav), sr, cfg.bands, cfg.window_s * 2).numpy()
        seconds = len(wav) / sr
        folder = run_dir / "attributions"
        with atomic_path(folder / f"{row['clip']}_tf.npz", suffix=".npz") as tmp:
            np.savez(tmp, attribution=attr, band_edges_hz=np.asarray(edges), seconds=seconds)
        fig = Figure(figsize=(6, 4.2))
        ax, bx = fig.subplots(2, 1, sharex=True)
        ax.imshow(
            log_mel(torch.as_tensor(wav), sr),
            origin="lower",
            aspect="auto",
            extent=(0, seconds, 0, 1),
            cmap="magma",
        )
        ax.set_yticks([])
        ax.set_title(
            f"{row['kind']}: predicted {row['pred']}: log-mel, and the drop of its logit per cell", fontsize=9
        )
        scale = float(np.abs(attr).max()) or 1.0
        bx.imshow(
            attr,
            origin="lower",
            aspect="auto",
            extent=(0, seconds, 0, cfg.bands),
            cmap="coolwarm",
            vmin=-scale,
            vmax=scale,
        )
        bx.set_yticks(range(cfg.bands), [f"{edges[i]:.0f}" for i in range(cfg.bands)], fontsize=7)
        bx.set_ylabel("band from (Hz)")
        bx.set_xlabel("time (s)")
        fig.tight_layout()
        with atomic_path(folder / f"{row['clip']}_tf.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90)
        row["png_tf"] = f"{row['clip']}_tf.png"


def ctc_clip_files(task, entries, loader, cfg: DictConfig, run_dir, frames_of) -> dict:
    """Per clip (the first ``worst + random`` of the split, or every input): ``<clip>_ctc.{npz,png}``,
    the posteriorgram and each emitted token's attribution over the frames."""
    model = FrameModel(task.featurizer, task.head).eval()
    limit = None if cfg.get("inputs") else cfg.worst + cfg.random
    rows: list[dict] = []
    folder = run_dir / "attributions"
    for batch in loader:
        if batch is None:
            continue
        frames, lengths = frames_of(task, batch)
        with torch.no_grad():
            logits = model(frames, lengths)
        for i, idx in enumerate(batch["index"].tolist()):
            if limit is not None and len(rows) >= limit:
                break
            n = int(lengths[i])
            tokens = emitted_tokens(logits[i], n, task.tokenizer.blank)
            attr = token_attributions(model, frames[i : i + 1], lengths[i : i + 1], tokens, cfg.method)
            post = posteriorgram(logits[i], n)
            pred = task.tokenizer.decode([v for _, v in tokens])
            names = [task.tokenizer.tokens[v] for _, v in tokens]
            e, name = entries[idx], f"{idx:05d}"
            ref = batch["text"][i] if "text" in batch else None
            with atomic_path(folder / f"{name}_ctc.npz", suffix=".npz") as tmp:
                np.savez(
                    tmp,
                    posteriorgram=post.numpy(),
                    token_frames=[t for t, _ in tokens],
                    token_ids=[v for _, v in tokens],
                    attribution=attr.numpy(),
                )
            title = f"ref {ref!r}, pred {pred!r}" if ref is not None else f"pred {pred!r}"
            seconds = n * task.backbone.downsample_rate / task.backbone.sample_rate
            with atomic_path(folder / f"{name}_ctc.png", suffix=".png") as tmp:
                ctc_figure(post, names, attr, seconds, title).savefig(tmp, dpi=90)
            rows.append(
                {
                    "clip": name,
                    "kind": "input" if cfg.get("inputs") else "test",
                    "audio_filepath": e.audio_filepath,
                    "png": f"{name}_ctc.png",
                    "pred": pred,
                    "ref": ref,
                    "tokens": names,
                    "title": title,
                }
            )
        if limit is not None and len(rows) >= limit:
            break
    summary = {"level": "frames", "method": cfg.method, "task": "ctc", "clips": rows}
    write_json(folder / "index.json", summary)
    log.info("CTC posteriorgrams and token attributions of %d clips in %s", len(rows), folder)
    return summary
