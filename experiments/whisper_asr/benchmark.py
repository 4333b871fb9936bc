"""Training cost and WER against the recipe a user would otherwise run: transformers' ``Seq2SeqTrainer`` as in
``examples/pytorch/speech-recognition/run_speech_recognition_seq2seq.py`` (30 s log-mel windows from
``WhisperProcessor``, ``model.freeze_encoder()`` for the decoder-only case, the example's
``DataCollatorSpeechSeq2SeqWithPadding``), on the same training strings, one invocation, each side in its own
process (its peak RSS); the training steps are timed the same way on both sides (wall time inside each
optimizer step).

    python -m experiments.whisper_asr.benchmark --epochs 5    # equal training: WER after 5 epochs, both sides
    python -m experiments.whisper_asr.benchmark --steps 2     # time 2 steps a side (quiet machine), no WER

``--epochs E``: each side trains E whole epochs at the same batch size and learning rates (decoder 1e-4,
encoder 1e-5) and is scored once at the end (no best-epoch choice on either side) on the same val strings,
normalised alike, greedy, ``max_new_tokens=32``: benchmark_epochs.csv. ``--steps S``: the first S steps of
an epoch a side, for per-step time on a quiet machine: benchmark_steps_<threads>threads.csv (each side's torch
threads: ``OMP_NUM_THREADS``, else every core). Ours:
``experiment=fsdd_digits_whisper`` (decoder-only from stored encoder states; storing them is a one-time cost
not counted) and ``backbone.freeze=none`` (full fine-tuning, the encoder on the real clip length).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from asr_transfer.config import PROJECT_ROOT as ROOT
from experiments.whisper_asr.cells import BUDGETS, WORK, cell
from experiments.whisper_asr.tables import DOCS

HERE = Path(__file__).resolve().parent
MODEL = ROOT.parent / "shared" / "models" / "whisper-tiny.en"


def recipe(freeze_encoder: bool, manifest: Path, batch_size: int, steps: int, epochs: int) -> dict:
    """The example's training loop for ``epochs`` epochs (or its first ``steps``); seconds inside optimizer
    steps, val WER at the end (not with ``steps``), peak RSS."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF
    from transformers import (
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        TrainerCallback,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    torch.manual_seed(0)
    processor = WhisperProcessor.from_pretrained(MODEL)
    model = WhisperForConditionalGeneration.from_pretrained(MODEL)
    if freeze_encoder:
        model.freeze_encoder()
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    data = []
    for r in rows:  # the example's prepare_dataset (datasets.map): features and labels once
        wav, sr = sf.read(r["audio_filepath"], dtype="float32")
        if sr != 16000:
            wav = AF.resample(torch.from_numpy(wav), sr, 16000).numpy()
        feats = processor.feature_extractor(wav, sampling_rate=16000).input_features[0]
        data.append({"input_features": feats, "labels": processor.tokenizer(r["text"]).input_ids})

    def collate(features):  # the example's DataCollatorSpeechSeq2SeqWithPadding
        batch = processor.feature_extractor.pad(
            [{"input_features": f["input_features"]} for f in features], return_tensors="pt"
        )
        labels = processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        ids = labels["input_ids"].masked_fill(labels.attention_mask.ne(1), -100)
        if (ids[:, 0] == model.config.decoder_start_token_id).all():
            ids = ids[:, 1:]
        batch["labels"] = ids
        return batch

    class StepTimes(TrainerCallback):
        total, steps, t0 = 0.0, 0, 0.0

        def on_step_begin(self, *a, **k):
            StepTimes.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            StepTimes.total += time.perf_counter() - StepTimes.t0
            StepTimes.steps += 1

    args = Seq2SeqTrainingArguments(
        output_dir=str(ROOT / ".cache" / "experiments" / "whisper_asr" / "recipe"),
        per_device_train_batch_size=batch_size,
        learning_rate=1e-4 if freeze_encoder else 1e-5,
        num_train_epochs=epochs,
        max_steps=steps or -1,  # --steps: the first steps of the epoch only
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        logging_steps=1000,
    )
    trainer = Seq2SeqTrainer(
        model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[StepTimes()]
    )
    trainer.train()
    wer = "" if steps else recipe_wer(model, processor, manifest.parent / "val.jsonl", batch_size)
    return {"s_per_step": StepTimes.total / max(StepTimes.steps, 1), "steps": StepTimes.steps, "val_wer": wer,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def recipe_wer(model, processor, manifest: Path, batch_size: int) -> float:
    """The recipe's evaluation (``predict_with_generate``: 30 s windows, greedy, the checkpoint's generation
    config) on the val strings ours is scored on, with the same normaliser and ``max_new_tokens``."""
    import soundfile as sf
    import torch
    from torchmetrics.text import WordErrorRate

    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    wer, norm = WordErrorRate(), processor.tokenizer.normalize
    model.eval()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        wavs = [sf.read(r["audio_filepath"], dtype="float32")[0] for r in chunk]
        feats = processor.feature_extractor(wavs, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(feats, max_new_tokens=32)
        hyps = processor.batch_decode(ids, skip_special_tokens=True)
        wer.update(
            [" ".join(norm(h).split()) for h in hyps], [" ".join(norm(r["text"]).split()) for r in chunk]
        )
    return float(wer.compute())


def ours(method: str, budget: str, batch_size: int, steps: int, epochs: int, n_eval: int) -> dict:
    extra = (
        f"trainer.max_epochs={1 if steps else epochs}",
        *([f"+trainer.limit_train_batches={steps}", "+trainer.limit_val_batches=0"] if steps else []),
        "callbacks.model_checkpoint.monitor=null",  # the last epoch's model, as the recipe's: no choice on val
        "callbacks.early_stopping=null",
        "test=false",
        f"data.batch_size={batch_size}",
    )
    row = cell(method, budget, 0, n_eval, extra=extra, tag=f"-bench-{steps}s{epochs}e")
    return {"s_per_step": row["s_per_step"], "steps": row["steps"], "val_wer": "" if steps else row["val_wer"],
            "peak_rss_mb": row["peak_rss_mb"], "seconds": row["seconds"]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--side", help="internal: one side as JSON")
    p.add_argument("--budget", default="50", help="run.py's budget key: 50 or all training strings")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5, help="epochs a side (the preset's 5); scored at the end")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="time this many steps a side instead (no WER); "
        "the epoch time is then s/step x the epoch's steps, the same count on both sides",
    )
    p.add_argument("--eval-per-speaker", type=int, default=100, help="val strings both sides are scored on")
    p.add_argument("--table", action="store_true", help="only rebuild README.md's tables from the CSVs")
    args = p.parse_args()
    if args.table:
        write_readme()
        return
    if args.side:
        side = json.loads(args.side)
        if side["kind"] == "recipe":
            out = recipe(
                side["freeze_encoder"], Path(side["manifest"]), args.batch_size, args.steps, args.epochs
            )
        else:
            out = ours(
                side["method"], args.budget, args.batch_size, args.steps, args.epochs, args.eval_per_speaker
            )
        print("ROW " + json.dumps(out))
        return

    def run(side: dict) -> dict:
        cmd = [sys.executable, "-m", "experiments.whisper_asr.benchmark", "--side", json.dumps(side), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--budget", args.budget, "--epochs", str(args.epochs), "--eval-per-speaker", str(args.eval_per_speaker)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        rows = [json.loads(x[4:]) for x in out.stdout.splitlines() if x.startswith("ROW ")]
        if not rows:
            sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
        return rows[0]

    results = {}
    results["ours_decoder"] = run({"kind": "ours", "method": "decoder"})  # stores the states, then trains
    n = 2 * BUDGETS[args.budget]  # the corpus the decoder run just used: its manifests have n and n_eval rows
    found = [m for m in (WORK / "manifests").rglob("train.jsonl") if len(m.read_text().splitlines()) == n
             and len((m.parent / "val.jsonl").read_text().splitlines()) == args.eval_per_speaker]  # fmt: skip
    manifest = max(found, key=lambda m: m.stat().st_mtime)
    results["recipe_frozen_encoder"] = run(
        {"kind": "recipe", "freeze_encoder": True, "manifest": str(manifest)}
    )
    results["ours_full"] = run({"kind": "ours", "method": "full"})
    results["recipe_full"] = run({"kind": "recipe", "freeze_encoder": False, "manifest": str(manifest)})
    from asr_transfer.utils.atomic import write_csv

    per_epoch = -(-2 * BUDGETS[args.budget] // args.batch_size)  # optimizer steps in one epoch, both sides
    table = [
        {"side": name, "steps": r["steps"], "s_per_step": round(float(r["s_per_step"]), 4),
         "epoch_s": round(float(r["s_per_step"]) * per_epoch, 2),
         "val_wer": r["val_wer"] if r["val_wer"] == "" else round(float(r["val_wer"]), 4),
         "peak_rss_mb": round(float(r["peak_rss_mb"]))}
        for name, r in results.items()
    ]  # fmt: skip
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))  # each side's torch threads
    write_csv(
        HERE / (f"benchmark_steps_{threads}threads.csv" if args.steps else "benchmark_epochs.csv"), table
    )
    for row in table:
        print(row)
    write_readme()


PAIRS = (
    ("ours_decoder", "recipe_frozen_encoder", 20),
    ("ours_full", "recipe_full", 3),
)  # (ours, recipe, target)


def summary(path: Path) -> str:
    """One CSV's table and its ratios (recipe epoch time / ours), as README.md shows them."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["| side | steps timed | s/step | epoch s | val WER | peak RSS MB |", "|---" * 6 + "|"]
    lines += [f"| {r['side']} | {r['steps']} | {r['s_per_step']} | {r['epoch_s']} | {r['val_wer'] or '-'} "
              f"| {r['peak_rss_mb']} |" for r in rows]  # fmt: skip
    by = {r["side"]: r for r in rows}
    lines.append("")
    for ours_side, recipe_side, target in PAIRS:
        o, t = by[ours_side], by[recipe_side]
        ratio = float(t["epoch_s"]) / float(o["epoch_s"])
        lines.append(
            f"- {ours_side} vs {recipe_side}: **{ratio:.1f}x** faster per epoch (target >= {target}x), "
            f"val WER {o['val_wer'] or '-'} vs {t['val_wer'] or '-'}, peak RSS {o['peak_rss_mb']} vs {t['peak_rss_mb']} MB"
        )
    return "\n".join(lines)


def write_readme() -> None:
    """README.md's benchmark tables, one per CSV present, between ``<!-- <csv stem>:start/end -->``."""
    from asr_transfer.utils.atomic import replace_between

    texts = {path.stem: summary(path) for path in sorted(HERE.glob("benchmark_*.csv"))}
    for stem, text in texts.items():
        replace_between(HERE / "README.md", f"<!-- {stem}:start -->", f"<!-- {stem}:end -->", text)
        print(f"{stem}.csv:\n{text}")
    quiet = texts.get("benchmark_steps_2threads")  # the how-to quotes the default-threads ratios
    if quiet:
        ratios = [line for line in quiet.splitlines() if line.startswith("- ")]
        replace_between(DOCS, "<!-- benchmark:start -->", "<!-- benchmark:end -->", "\n".join(ratios))


if __name__ == "__main__":
    main()
