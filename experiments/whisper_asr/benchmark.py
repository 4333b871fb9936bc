"""Per-epoch training cost against the recipe a user would otherwise run: transformers' ``Seq2SeqTrainer``
as in ``examples/pytorch/speech-recognition/run_speech_recognition_seq2seq.py`` (30 s log-mel windows from
``WhisperProcessor``, ``model.freeze_encoder()`` for the decoder-only case, the example's
``DataCollatorSpeechSeq2SeqWithPadding``), on the same training strings, one invocation, each side in
its own process (its peak RSS), one epoch each; the training steps are timed the same way on both sides
(wall time inside each optimizer step, summed over the epoch).

    python experiments/whisper_asr/benchmark.py --n 50 --batch-size 16

Ours: ``experiment=fsdd_digits_whisper`` (decoder-only from stored encoder states; storing them is a
one-time cost reported apart) and ``backbone.freeze=none`` (full fine-tuning, the encoder on the real
clip length). Results: benchmark.csv, ratios printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

MODEL = ROOT.parent / "shared" / "models" / "whisper-tiny.en"


def recipe(freeze_encoder: bool, manifest: Path, batch_size: int) -> dict:
    """The example's training loop for one epoch; seconds inside optimizer steps, peak RSS."""
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
        num_train_epochs=1,
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
    return {"s_per_step": StepTimes.total / max(StepTimes.steps, 1), "steps": StepTimes.steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def ours(method: str, budget: str, batch_size: int) -> dict:
    from run import cell

    extra = (
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=0",
        "test=false",
        f"data.batch_size={batch_size}",
    )
    row = cell(method, budget, 0, 10, extra=extra, tag="-bench")
    return {"s_per_step": row["s_per_step"], "peak_rss_mb": row["peak_rss_mb"], "seconds": row["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--side", help="internal: one side as JSON")
    p.add_argument("--budget", default="50", help="run.py's budget key: 50 or all training strings")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    if args.side:
        side = json.loads(args.side)
        if side["kind"] == "recipe":
            out = recipe(side["freeze_encoder"], Path(side["manifest"]), args.batch_size)
        else:
            out = ours(side["method"], args.budget, args.batch_size)
        print("ROW " + json.dumps(out))
        return
    from run import WORK

    def run(side: dict) -> dict:
        cmd = [sys.executable, __file__, "--side", json.dumps(side), "--batch-size", str(args.batch_size),
               "--budget", args.budget]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True)
        rows = [json.loads(x[4:]) for x in out.stdout.splitlines() if x.startswith("ROW ")]
        if not rows:
            sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
        return rows[0]

    results = {}
    results["ours_decoder"] = run({"kind": "ours", "method": "decoder"})  # stores the states, then trains
    from run import BUDGETS

    n = 2 * BUDGETS[args.budget]  # the corpus the decoder run just used: its training manifest has n rows
    found = [m for m in (WORK / "manifests").rglob("train.jsonl") if len(m.read_text().splitlines()) == n]
    manifest = max(found, key=lambda m: m.stat().st_mtime)
    results["recipe_frozen_encoder"] = run(
        {"kind": "recipe", "freeze_encoder": True, "manifest": str(manifest)}
    )
    results["ours_full"] = run({"kind": "ours", "method": "full"})
    results["recipe_full"] = run({"kind": "recipe", "freeze_encoder": False, "manifest": str(manifest)})
    with open(HERE / "benchmark.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["side", "s_per_step", "peak_rss_mb"])
        for name, r in results.items():
            w.writerow([name, round(r["s_per_step"], 4), round(r["peak_rss_mb"])])
    dec = results["recipe_frozen_encoder"]["s_per_step"] / results["ours_decoder"]["s_per_step"]
    full = results["recipe_full"]["s_per_step"] / results["ours_full"]["s_per_step"]
    print(
        f"decoder-only from stored states: {dec:.1f}x faster per epoch than the recipe's freeze_encoder (target >= 20x)"
    )
    print(f"full fine-tuning: {full:.1f}x faster per epoch than the recipe (target >= 3x)")


if __name__ == "__main__":
    main()
