"""Noise augmentation and SpecAugment for the frozen Whisper tiny.en probe, on clean and noisy tests.

Split: train george + jackson (``--per-class`` clips per digit: a few hundred labelled clips),
validate on nicolas (clean), test on yweweler: clean, and mixed with white and babble noise at
10 and 0 dB (``experiments/fsdd.py`` says where each noise comes from). Every condition trains the
same number of steps (``--epochs`` x the same clips, batch 8), and its best-by-val checkpoint is
scored, in one eval, on three val sets (nicolas clean, and with fresh training-type noise at 10 and
0 dB: ``fsdd.noisy_val``; what ``select.py`` chooses settings on) and the five test sets (reported
only). Per-clip outcomes go to ``<csv>_clips.csv`` for paired intervals.

    python -m experiments.augmentation.run [--seeds 0 1 2] [--epochs 4] [--per-class 30]
    python -m experiments.augmentation.run --head attentive --conditions none babble noise
    python -m experiments.augmentation.run --copies 4 --conditions none babble noise
    python -m experiments.augmentation.run --table [--head attentive] [--copies 4]
    python -m experiments.augmentation.run --copies 4 --conditions none noise noise_0to20 noise_m10to5 \
        --out experiments/augmentation/val_snr.csv         # the SNR grid that select.py chooses from

Conditions: ``none``; ``noise`` (``augment=noise``, training noise folder, SNR in [-5, 10] dB: the
backbone runs every step; ``noise_0to20``: SNR in [0, 20] dB; ``noise_m10to5``: [-10, 5] dB; ``babble``:
the training babble files alone, SNR in [-5, 10] dB); ``specaugment``, ``specaug_weak``,
``specaug_strong`` (time and channel masks from the cached frozen backbone's frames).

Optimiser: every condition of one table trains the same way. On the fly (``--copies 0``) the training
audio changes every epoch, so the linear head trains by minibatch (``~probe``: the preset's epochs and
rate) also without augmentation. ``--copies K`` stores K augmented copies of the training split
(``features.augmented_copies=K``) and every condition is the exact probe (``probe=lbfgs``, L2 chosen on
val) fitted to convergence on the stored features: no step budget at all. ``--head attentive``: an
attention-pooling head on the frozen frames (minibatch; no exact fit exists for it).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import sys
import time
from pathlib import Path

import soundfile as sf

from asr_transfer.pipeline.train import train
from asr_transfer.utils.atomic import write_csv
from experiments.fsdd import SR, clips_of, compose_cfg, noisy_val, prepare

HERE = Path(__file__).resolve().parent
TRAIN, VAL, TEST = ["george", "jackson"], "nicolas", "yweweler"
CONDITIONS = {
    "none": [],
    "noise": ["augment=noise", "augment.snr_db=[-5,10]"],
    "noise_0to20": ["augment=noise", "augment.snr_db=[0,20]"],
    "noise_m10to5": ["augment=noise", "augment.snr_db=[-10,5]"],
    "babble": ["augment=noise", "augment.snr_db=[-5,10]"],  # noise_dir: the training babble only
    "specaugment": [
        "augment=specaugment",
        "augment.specaugment.mask_time_prob=0.3",
        "augment.specaugment.mask_time_length=4",
        "augment.specaugment.mask_feature_prob=0.2",
        "augment.specaugment.mask_feature_length=32",
    ],
    "specaug_weak": [
        "augment=specaugment",
        "augment.specaugment.mask_time_prob=0.15",
        "augment.specaugment.mask_time_length=4",
        "augment.specaugment.mask_feature_prob=0.1",
        "augment.specaugment.mask_feature_length=16",
    ],
    "specaug_strong": [
        "augment=specaugment",
        "augment.specaugment.mask_time_prob=0.5",
        "augment.specaugment.mask_time_length=4",
        "augment.specaugment.mask_feature_prob=0.3",
        "augment.specaugment.mask_feature_length=48",
    ],
}
# What each run is scored on: validation (nicolas, clean and with training-type noise) chooses, test reports
VAL_SETS = ["val_clean", "val_10dB", "val_0dB"]
TEST_SETS = ["clean", "white_10dB", "white_0dB", "babble_10dB", "babble_0dB"]


def manifest(path: Path, clips: list[Path]) -> Path:
    rows = [{"audio_filepath": str(c), "duration": 0.0, "label": c.stem.split("_")[0]} for c in clips]
    for r, c in zip(rows, clips):
        r["duration"] = sf.info(str(c)).frames / SR
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def per_class(clips: list[Path], k: int, seed: int = 0) -> list[Path]:
    by = {}
    for c in clips:
        by.setdefault(c.stem.split("_")[0], []).append(c)
    rng = random.Random(seed)
    return sorted(x for v in by.values() for x in rng.sample(v, min(k, len(v))))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--test-per-class", type=int, default=20)
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/aug_study"))
    ap.add_argument("--head", default="linear", help="head=<name>: linear (the preset) or attentive")
    ap.add_argument("--copies", type=int, default=0, help="features.augmented_copies (0: augment on the fly)")
    ap.add_argument("--out", type=Path, help="default: results[_<head>][_copies<K>].csv")
    a = ap.parse_args()
    a.out = a.out or results_path(a.head, a.copies)
    # one optimiser per table: the exact probe needs stored pooled features (copies, linear head)
    optimiser = ["probe=lbfgs"] if a.copies and a.head == "linear" else ["~probe"]
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    train_m = manifest(work / "train.jsonl", per_class(clips_of(TRAIN), a.per_class))
    val_clips = per_class(clips_of([VAL]), 10)
    val_m = manifest(work / "val.jsonl", val_clips)
    test_clips = per_class(clips_of([TEST]), a.test_per_class)
    tests = {"clean": manifest(work / "test_clean.jsonl", test_clips)}
    if not (work / "tests").is_dir():
        prepare(work, TRAIN, VAL, TEST, [10, 0])
    if not (work / "val").is_dir():
        noisy_val(work, val_clips, TRAIN, [10, 0])
    keep = {str(c.name) for c in test_clips}
    for name in TEST_SETS[1:]:
        rows = [json.loads(x) for x in (work / "tests" / f"{name}.jsonl").read_text().splitlines()]
        sub = work / f"test_{name}.jsonl"
        sub.write_text("".join(json.dumps(r) + "\n" for r in rows if Path(r["audio_filepath"]).name in keep))
        tests[name] = sub
    sets = {
        "val_clean": val_m,
        "val_10dB": work / "val" / "val_10dB.jsonl",
        "val_0dB": work / "val" / "val_0dB.jsonl",
    }
    scored = score_manifest(work / "score.jsonl", {**sets, **tests})  # (manifest, {audio path: set})
    common = [
        "experiment=fsdd_probe",
        "data=manifest",
        f"data.train_manifest={train_m}",
        f"data.val_manifest={val_m}",
        f"data.test_manifest={tests['clean']}",
        "data.batch_size=8",
        f"trainer.max_epochs={a.epochs}",
        f"paths.cache_dir={work / 'cache'}",
        f"augment.noise_dir={work / 'train_noise'}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        f"head={a.head}",
        f"features.augmented_copies={a.copies}",
        *optimiser,
    ]
    rows = list(csv.DictReader(open(a.out))) if a.out.is_file() else []
    clips_csv = a.out.with_name(a.out.stem + "_clips.csv")
    clip_rows = list(csv.DictReader(open(clips_csv))) if clips_csv.is_file() else []
    done = {(r["condition"], r["seed"]) for r in rows}
    for cond in a.conditions:
        for seed in a.seeds:
            if (cond, str(seed)) in done:
                continue
            run_dir = work / "runs" / f"{a.out.stem}-{cond}-{seed}"
            extra = CONDITIONS[cond] if cond != "none" else []
            overrides = [f"paths.output_dir={run_dir}", f"seed={seed}", *common, *extra]
            if cond == "babble":
                babble = work / "train_babble"
                babble.mkdir(exist_ok=True)
                for f in sorted((work / "train_noise").glob("babble_*.wav")):
                    if not (babble / f.name).exists():
                        (babble / f.name).symlink_to(f)
                i = overrides.index(f"augment.noise_dir={work / 'train_noise'}")
                overrides[i] = f"augment.noise_dir={babble}"
            elif not cond.startswith("noise"):
                overrides.remove(f"augment.noise_dir={work / 'train_noise'}")
            t = time.perf_counter()
            train(compose_cfg("train", overrides))
            seconds = time.perf_counter() - t
            metrics = json.loads((run_dir / "metrics.json").read_text())
            ckpt = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))[0]
            row = {"condition": cond, "seed": seed, "epochs": a.epochs, "train_clips": 10 * a.per_class}
            correct = score(ckpt, scored, work / "cache", run_dir / "eval_all")
            for name in [*VAL_SETS, *TEST_SETS]:
                row[name] = round(sum(correct[name]) / len(correct[name]), 4)
                clip_rows.append({"condition": cond, "seed": seed, "set": name,
                                  "correct": "".join(str(int(c)) for c in correct[name])})  # fmt: skip
            row["val_mean"] = round(sum(row[n] for n in VAL_SETS) / len(VAL_SETS), 4)
            row["train_seconds"] = round(seconds, 1)
            row["augmented"] = json.dumps({k: v for k, v in metrics.items() if k.startswith("augment/")})
            rows.append(row)
            print(row, flush=True)
            write_csv(clips_csv, clip_rows)
            write_csv(a.out, rows)


def score_manifest(path: Path, sets: dict[str, Path]) -> tuple[Path, dict[str, str]]:
    """One manifest of every val and test set (one eval per run instead of one per set); returns it and
    {audio path: set name}."""
    rows, where = [], {}
    for name, m in sets.items():
        for line in Path(m).read_text().splitlines():
            r = json.loads(line)
            rows.append(r)
            where[r["audio_filepath"]] = name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, where


def score(
    ckpt: Path, scored: tuple[Path, dict[str, str]], cache_dir: Path, out_dir: Path
) -> dict[str, list[bool]]:
    """``eval.py`` of ``ckpt`` on the combined manifest: per set, each clip right or wrong (manifest order)."""
    from asr_transfer.pipeline.evaluate import evaluate

    manifest_path, set_of = scored
    overrides = [
        f"ckpt_path={ckpt}", "data=manifest", "data.train_manifest=null", f"data.test_manifest={manifest_path}",
        f"paths.cache_dir={cache_dir}", f"paths.output_dir={out_dir}", "+trainer.enable_progress_bar=false",
    ]  # fmt: skip
    evaluate(compose_cfg("eval", overrides))
    preds = [json.loads(x) for x in (out_dir / "test_predictions.jsonl").read_text().splitlines()]
    out: dict[str, list[bool]] = {}
    for p in sorted(preds, key=lambda p: p["index"]):
        out.setdefault(set_of[p["audio_filepath"]], []).append(p["ref"] == p["pred"])
    return out


def results_path(head: str = "linear", copies: int = 0) -> Path:
    name = "results" + ("" if head == "linear" else f"_{head}") + (f"_copies{copies}" if copies else "")
    return HERE / f"{name}.csv"


def table(path: Path) -> str:
    """Mean (min-max) test accuracy per condition over seeds, as a markdown table."""
    rows = list(csv.DictReader(open(path)))
    sets = [s for s in [*VAL_SETS, *TEST_SETS] if s in rows[0]]
    out = ["| condition | seeds | " + " | ".join(sets) + " |", "|---" * (len(sets) + 2) + "|"]
    for cond in dict.fromkeys(r["condition"] for r in rows):
        rs = [r for r in rows if r["condition"] == cond]
        cells = []
        for s in sets:
            v = [float(r[s]) for r in rs]
            cells.append(
                f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})" if len(v) > 1 else f"{v[0]:.3f}"
            )
        out.append(f"| {cond} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    if "--table" in sys.argv:
        t = argparse.ArgumentParser()
        t.add_argument("--table", action="store_true")
        t.add_argument("--head", default="linear")
        t.add_argument("--copies", type=int, default=0)
        t = t.parse_args()
        print(table(results_path(t.head, t.copies)))
    else:
        main()
