"""One cell of the Whisper ASR study (``run.py``): a method, a budget and a seed, run in its own process, and
the row it adds to results.csv (metrics, cost, the CTC transcripts scored as the decoder's)."""

from __future__ import annotations

import importlib
import json
import resource
import time
from pathlib import Path

from asr_transfer.config import PROJECT_ROOT as ROOT

HERE = Path(__file__).resolve().parent
WORK = ROOT / ".cache" / "experiments" / "whisper_asr"  # corpus, stored states, run dirs
BUDGETS = {"50": 25, "all": 400}  # training strings per training speaker (2 speakers)
REAL = "backbone.pad_to_30s=false"  # the encoder on the clip's real length (0.5 s minimum window)
METHODS = {  # method -> (preset overrides, trains?); the preset's window is the val-chosen 30 s
    "zero_shot_real": (["experiment=fsdd_digits_whisper", REAL], False),
    "zero_shot": (["experiment=fsdd_digits_whisper"], False),
    "decoder_real": (["experiment=fsdd_digits_whisper", REAL], True),
    "decoder": (["experiment=fsdd_digits_whisper"], True),  # frozen encoder, stored states
    # The encoder trains in these, so it runs every step: on the real length (a 30 s window is ~12x the
    # encoder compute per clip; not chosen on val, stated in the README).
    "lora": (
        [
            "experiment=fsdd_digits_whisper",
            REAL,
            "adapter=lora",
            "decoder_adapter=lora",
            "head.freeze=all",
            "optimizer.lr=1e-3",
            "task.backbone_lr=1e-3",
        ],
        True,
    ),  # fmt: skip
    "full": (["experiment=fsdd_digits_whisper", REAL, "backbone.freeze=none", "task.backbone_lr=1e-5"], True),
    "ctc": (["experiment=fsdd_digits_ctc"], True),
}
WINDOWS = {"zero_shot_real": "real", "zero_shot": "30s", "decoder_real": "real", "decoder": "30s"}
FIELDS = ["method", "budget", "seed", "n_train", "n_eval", "val_wer", "val_wer_raw", "val_cer",
          "val_hallucination", "test_wer", "test_wer_ci95_low", "test_wer_ci95_high", "test_wer_raw",
          "test_der", "test_der_ci95_low", "test_der_ci95_high", "test_cer", "test_cer_ci95_low", "test_cer_ci95_high", "test_cer_raw", "test_hallucination",
          "trainable", "s_per_step", "peak_rss_mb", "ckpt_mb", "store_kb_per_clip", "eval_s", "cpu_s", "seconds"]  # fmt: skip


class StepTimer:
    """Seconds per optimizer step (training batches only, not validation or decoding), and seconds in
    validation and test loops (decoding)."""

    def __new__(cls):
        import lightning as L

        class _Timer(L.Callback):
            def __init__(self):
                self.total, self.steps, self.t0, self.eval_s, self.e0 = 0.0, 0, 0.0, 0.0, 0.0

            def on_train_batch_start(self, *args):
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, *args):
                self.total += time.perf_counter() - self.t0
                self.steps += 1

            def on_validation_epoch_start(self, *args):
                self.e0 = time.perf_counter()

            def on_validation_epoch_end(self, *args):
                self.eval_s += time.perf_counter() - self.e0

            on_test_epoch_start, on_test_epoch_end = on_validation_epoch_start, on_validation_epoch_end

        cls.instance = _Timer()
        return cls.instance


def cell(method: str, budget: str, seed: int, n_eval: int, extra: tuple = (), tag: str = "") -> dict:
    from asr_transfer.config import compose
    from asr_transfer.pipeline.evaluate import zero_shot
    from asr_transfer.pipeline.train import train

    preset, trains = METHODS[method]
    run_dir = WORK / "runs" / f"{method}-{budget}-seed{seed}-n{n_eval}{tag}"
    ov = [*preset, *extra, f"seed={seed}", f"paths.cache_dir={WORK}", f"paths.output_dir={run_dir}",
          f"data.corpus.train_per_speaker={BUDGETS[budget]}", f"data.corpus.eval_per_speaker={n_eval}",
          "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]  # fmt: skip
    if trains:
        ov += ["+callbacks.step_timer._target_=experiments.whisper_asr.cells.StepTimer"]
    cfg = compose(ov)
    t0 = time.perf_counter()
    if trains:
        train(cfg)
    else:
        zero_shot(cfg)
    m = json.loads((run_dir / "metrics.json").read_text())
    tested = (run_dir / "test_transcripts.jsonl").is_file()  # not with test=false (benchmark.py)
    scored = whisper_scored(run_dir, cfg.backbone.name_or_path) if tested else {}
    if method == "ctc":  # CTC's own WER counts spelled words; score its transcripts as seq2seq's are
        own = {k: v for k, v in m.items() if not k.startswith(("val/", "test/"))}  # val: not comparable
        m = {**own, **scored}
    m.update({k: v for k, v in scored.items() if k.startswith("test/der")})
    # the timer Hydra instantiated, from this module as Hydra imported it
    timer = getattr(importlib.import_module("experiments.whisper_asr.cells").StepTimer, "instance", None)
    ckpt = sorted((run_dir / "checkpoints").glob("best-*.ckpt")) if trains else []
    row = {
        "method": method, "budget": budget if trains else "-", "seed": seed, "n_train": 2 * BUDGETS[budget] if trains else 0,
        "n_eval": n_eval, "trainable": int(m.get("params/trainable", 0)),
        "s_per_step": round(timer.total / max(timer.steps, 1), 4) if timer else "", "steps": timer.steps if timer else 0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ckpt_mb": round(ckpt[0].stat().st_size / 2**20, 2) if ckpt else "",
        "store_kb_per_clip": store_kb_per_clip(cfg.backbone) if method in WINDOWS else "",
        "eval_s": round(timer.eval_s, 1) if timer else "",
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),  # the process's CPU (wall: shared VM)
    }  # fmt: skip
    for f in FIELDS:  # val_wer -> val/wer, test_wer_ci95_low -> test/wer_ci95_low
        split, _, name = f.partition("_")
        if split in ("val", "test") and f"{split}/{name}" in m:
            row[f] = m[f"{split}/{name}"]
    return row


def whisper_scored(run_dir: Path, model: str) -> dict:
    """A run's test transcripts scored as ``task=seq2seq`` scores its own (Whisper's EnglishTextNormalizer
    on reference and hypothesis, the same per-clip metrics and bootstrap), so CTC ("eight three zero")
    and the decoder ("830") share one WER/CER. Val transcripts are not written: val stays CTC's own."""
    from asr_transfer.stats import Bootstrap, ratio_metric
    from asr_transfer.tasks.seq2seq import Seq2SeqTask
    from asr_transfer.text.errors import edit_counts
    from asr_transfer.text.whisper import WhisperText, hallucinated

    text = WhisperText(model, multilingual=False)
    rows = [json.loads(x) for x in (run_dir / "test_transcripts.jsonl").read_text().splitlines()]
    rows = [{**r, "ref_norm": text.normalize(r["ref"]), "pred_norm": text.normalize(r["pred"]),
             "hallucinated": hallucinated(r["ref"], r["pred"])} for r in rows]  # fmt: skip
    metrics = Seq2SeqTask.clip_metrics(rows)
    # Digit error rate: the digits of the normalised texts, edit distance over the reference's digits.
    # Whisper writes "8, 3, 0" or "830" for the same three digits; the normalised WER counts that
    # formatting (one word against three), the digit error rate does not.
    # The normaliser leaves a lone digit spelled ("one 0"): spelled digits count as digits.
    spelled = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine".split())}

    def digit_string(text: str) -> str:
        return "".join(spelled.get(w, "".join(c for c in w if c.isdigit())) for w in text.split())

    digits = [(digit_string(r["ref_norm"]), digit_string(r["pred_norm"])) for r in rows]
    metrics["der"] = ratio_metric(*edit_counts([d[0] for d in digits], [d[1] for d in digits], words=False))
    return {**{f"test/{k}": m.value() for k, m in metrics.items()}, **Bootstrap().intervals(metrics)}


def backfill(row: dict) -> dict:
    """A row written before a column existed gets the digit error rate from its run's transcripts."""
    budget = "50" if row["budget"] == "-" else row["budget"]
    run_dir = WORK / "runs" / f"{row['method']}-{budget}-seed{row['seed']}-n{row['n_eval']}"
    if row.get("test_der") in ("", None) and (run_dir / "test_transcripts.jsonl").is_file():
        from asr_transfer.config import compose

        model = compose([*METHODS[row["method"]][0], f"paths.cache_dir={WORK}"]).backbone.name_or_path
        scored = whisper_scored(run_dir, model)
        row.update({f.replace("test/", "test_"): v for f, v in scored.items() if f.startswith("test/der")})
    return row


def store_kb_per_clip(backbone_cfg) -> float | str:
    """KB per clip in the features store of this backbone setting (its encoder states, float16), from the
    store's own pass log; "" when this cell stored nothing (the encoder trains)."""
    ident = f"pad30={backbone_cfg.pad_to_30s}:window={float(backbone_cfg.min_window_s)}:return_window"
    clips = size = 0
    for spec in (WORK / "features").glob("*/spec.json"):
        if json.loads(spec.read_text())["backbone"].endswith(ident):
            for line in (spec.parent / "passes.jsonl").read_text().splitlines():
                p = json.loads(line)
                clips, size = clips + p["clips"], size + p["bytes"]
    return round(size / clips / 1024, 1) if clips else ""
