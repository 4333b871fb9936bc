"""Run and sweep directories as train.py and a multirun leave them, written directly (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from tests.conftest import tone, write_wav


def _common(run: Path, task: str, metrics: dict) -> None:
    (run / ".hydra").mkdir(parents=True)
    cfg = {"task": {"_target_": task}, "backbone": {"_target_": "x.Whisper"}, "optimizer": {"lr": 0.01}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["optimizer.lr=0.01"]))
    (run / "metrics.json").write_text(json.dumps(metrics))
    log = run / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    with open(log, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "step", "train/loss", "val/loss", "val/acc"])
        w.writeheader()
        for step in range(0, 50, 10):
            w.writerow({"epoch": step // 10, "step": step, "train/loss": 2.0 / (1 + step)})
            w.writerow(
                {"epoch": step // 10, "step": step, "val/loss": 1.5 / (1 + step), "val/acc": step / 50}
            )


def classification_run(run: Path) -> Path:
    labels = ["high", "low", "mid"]
    metrics = {"val/acc": 0.8, "test/acc": 0.75, "test/acc_ci95_low": 0.25, "test/acc_ci95_high": 1.0}
    _common(run, "asr_transfer.tasks.classification.ClassificationTask", metrics)
    (run / "confusion_matrix.json").write_text(
        json.dumps({"labels": labels, "matrix": [[3, 1, 0], [0, 4, 0], [1, 1, 2]]})
    )
    rows = []
    for i, (true, top) in enumerate([("high", ["low", "high", "mid"]), ("mid", ["high", "mid", "low"]),
                                     ("low", ["low", "mid", "high"]), ("mid", ["mid", "low", "high"])]):  # fmt: skip
        wav = write_wav(run.parent / "audio" / f"{true}_{i}.wav", tone(0.4, 8000, 300 + 100 * i, i), 8000)
        rows.append(
            {
                "audio_filepath": str(wav),
                "index": i,
                "ref": true,
                "pred": top[0],
                "top": top,
                "probs": [0.6, 0.3, 0.1],
            }
        )
    (run / "test_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(run / "layers.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["layer", "val/acc", "test/acc"])
        w.writeheader()
        w.writerows([{"layer": k, "val/acc": 0.5 + 0.1 * k, "test/acc": 0.45 + 0.1 * k} for k in range(3)])
        w.writerows([{"layer": "weighted_sum", "val/acc": 0.8, "test/acc": 0.76},
                     {"layer": "concat", "val/acc": 0.82, "test/acc": 0.79}])  # fmt: skip
    return run


def ctc_run(run: Path) -> Path:
    _common(run, "asr_transfer.tasks.ctc.CTCTask", {"val/wer": 0.2, "test/wer": 0.25, "test/cer": 0.1})
    pairs = [("one two three", "one two three"), ("four five", "four nine five"), ("six seven eight nine", "six eight nine"),
             ("zero", "oh")]  # fmt: skip
    rows = []
    for i, (ref, hyp) in enumerate(pairs):
        wav = write_wav(run.parent / "audio" / f"utt_{i}.wav", tone(0.5, 16000, 500, i), 16000)
        rows.append({"audio_filepath": str(wav), "index": i, "ref": ref, "pred": hyp})
    (run / "test_transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def sweep_dir(sweep: Path) -> Path:
    sweep.mkdir(parents=True)
    rows = [
        {"rank": i + 1, "trial": t, "val/acc": acc, "test/acc": acc - 0.05,
         "overrides": f"optimizer.lr={lr} head={head}", "run_dir": str(sweep / str(t))}
        for i, (t, acc, lr, head) in enumerate([(2, 0.9, 0.01, "mlp"), (0, 0.8, 0.001, "linear"), (1, 0.7, 0.1, "mlp")])
    ]  # fmt: skip
    with open(sweep / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return sweep


def probe_run(run: Path) -> Path:
    """A probe=lbfgs run: classification plus probe.csv (one row per L2 of the grid)."""
    classification_run(run)
    with open(run / "probe.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["l2", "iterations", "val/acc", "val/loss"])
        w.writeheader()
        w.writerows(
            [
                {"l2": l2, "iterations": 10, "val/acc": acc, "val/loss": 0.5}
                for l2, acc in ((0.1, 0.7), (0.001, 0.8))
            ]
        )
    return run


def interpret_run(run: Path) -> Path:
    """A classification run after ``explain.py faithfulness=true`` and ``python -m asr_transfer.drift``."""
    import numpy as np

    from asr_transfer.interpret.faithfulness import write_faithfulness
    from asr_transfer.interpret.figures import write_clip
    from asr_transfer.pipeline.drift import write_figure
    from asr_transfer.utils.atomic import write_csv

    classification_run(run)
    wav = write_wav(run / "clips" / "a.wav", tone(0.5, 16000, 440.0), 16000)
    import torch

    rows = []
    for k, kind in enumerate(["worst", "random"]):
        attr = np.sin(np.linspace(0, 3, 25)) * (k + 1)
        _, png = write_clip(
            run / "attributions", f"{k:05d}", attr, 0.5, kind, torch.from_numpy(tone(0.5, 16000, 440.0))
        )
        rows.append(
            {
                "clip": f"{k:05d}",
                "kind": kind,
                "audio_filepath": str(wav),
                "png": png.name,
                "true": "high",
                "pred": "low",
                "p_true": 0.2,
            }
        )
    (run / "attributions" / "index.json").write_text(json.dumps({"level": "frames", "clips": rows}))
    write_faithfulness(
        run, {"metric": "acc", "shares": [0.0, 0.2], "attribution": [0.9, 0.3], "random": [0.9, 0.85]}
    )
    drift = [{"layer": k, "cka": 1.0 - 0.1 * k, "weight_change": 0.01 * k} for k in range(3)]
    write_csv(run / "drift.csv", drift)
    write_figure(run / "drift.png", drift)
    return run


def frames_run(run: Path) -> Path:
    """A task=frames run: test_segments.jsonl with each clip's reference and predicted segments."""
    metrics = {"val/frame_f1": 0.8, "test/frame_f1": 0.75, "test/event_f1": 0.5}
    _common(run, "asr_transfer.tasks.frames.FramesTask", metrics)
    clips = [  # (reference, predicted): a perfect clip, a wrong label, a missed segment
        ([[0.1, 0.4, "3"], [0.6, 0.9, "7"]], [[0.1, 0.4, "3"], [0.6, 0.9, "7"]]),
        ([[0.2, 0.7, "1"]], [[0.2, 0.7, "2"]]),
        ([[0.1, 0.3, "5"], [0.5, 0.9, "8"]], [[0.1, 0.3, "5"]]),
    ]
    rows = []
    for i, (ref, pred) in enumerate(clips):
        wav = write_wav(run.parent / "audio" / f"string_{i}.wav", tone(1.0, 16000, 300 + 200 * i, i), 16000)
        rows.append({"audio_filepath": str(wav), "index": i, "reference": ref, "predicted": pred})
    (run / "test_segments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run
