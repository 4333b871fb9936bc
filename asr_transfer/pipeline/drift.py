"""Where fine-tuning changed the encoder: ``python -m asr_transfer.drift ckpt_path=... [max_clips=32] [out=...]``.

The checkpoint's fine-tuned backbone and a fresh pretrained one (the same config, adapters attached at
their identity start) run on the same val clips; per layer, linear CKA of their hidden states over
valid frames, and the relative weight change (LoRA: its merged update). Writes ``drift.csv`` and
``drift.png`` in ``out`` (default: the checkpoint's run directory).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.interpret.cka import effective_weights, linear_cka, valid_frames, weight_change
from asr_transfer.pipeline.build import build_backbone, build_parts, task_class
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.pipeline.restore import restore_config, restore_task
from asr_transfer.utils.atomic import atomic_path, write_csv
from asr_transfer.utils.errors import ConfigError

log = logging.getLogger(__name__)


def drift(
    ckpt_path: str, out: str | Path | None = None, max_clips: int = 32, split: str = "val"
) -> list[dict]:
    state = load_checkpoint(ckpt_path)
    cfg = restore_config(state)
    if cfg.get("features"):
        cfg.features.mode = "off"  # both backbones run on audio
    parts = build_parts(
        cfg, make_plan(cfg, "test"), run_dir=None, **task_class(cfg).checkpoint_data_kwargs(state)
    )
    dm = parts.datamodule
    dm.prepare_data()
    dm.setup("fit")
    if split not in dm.datasets:
        raise ConfigError(f"drift compares hidden states on {split} clips, but the run has no {split} split")
    tuned = restore_task(cfg, parts, state).backbone.eval()
    pretrained = build_backbone(cfg).eval()
    before: list[list[torch.Tensor]] = []
    after: list[list[torch.Tensor]] = []
    seen = 0
    with torch.no_grad():
        for batch in dm.loader(split):
            h0, lengths = pretrained(batch["wavs"], batch["lengths"])
            h1, _ = tuned(batch["wavs"], batch["lengths"])
            before.append([valid_frames(h, lengths) for h in h0])
            after.append([valid_frames(h, lengths) for h in h1])
            seen += len(batch["wavs"])
            if seen >= max_clips:
                break
    changes = weight_change(effective_weights(pretrained), effective_weights(tuned))
    rows = []
    for k in range(len(before[0])):
        cka = linear_cka(torch.cat([b[k] for b in before]), torch.cat([a[k] for a in after]))
        # hidden state k > 0 is the output of transformer layer k - 1 (state 0: the input embedding)
        rows.append({"layer": k, "cka": round(cka, 4), "weight_change": round(changes.get(k - 1, 0.0), 6)})
    out = Path(out) if out else Path(ckpt_path).resolve().parent.parent
    write_csv(out / "drift.csv", rows)
    write_figure(out / "drift.png", rows)
    log.info("drift on %d %s clips in %s", seen, split, out / "drift.csv")
    return rows


def write_figure(path: Path, rows: list[dict]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    layers = [r["layer"] for r in rows]
    ax.plot(layers, [1 - r["cka"] for r in rows], "o-", label="1 - CKA (hidden states)")
    ax.plot(layers, [r["weight_change"] for r in rows], "s--", label="relative weight change")
    ax.set_xlabel("hidden state (0 = input embedding)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)


def main(argv: list[str] | None = None) -> None:
    from asr_transfer.console import console_logging, user_errors

    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    unknown = set(args) - {"ckpt_path", "out", "max_clips", "split"}
    if "ckpt_path" not in args or unknown:
        sys.exit(
            f"usage: python -m asr_transfer.drift ckpt_path=... [out=...] [max_clips=32] [split=val]"
            f"{' (unknown: ' + ', '.join(sorted(unknown)) + ')' if unknown else ''}"
        )
    console_logging()
    with user_errors():
        rows = drift(
            args["ckpt_path"], args.get("out"), int(args.get("max_clips", 32)), args.get("split", "val")
        )
    for r in rows:
        print(", ".join(f"{k}={v}" for k, v in r.items()))
