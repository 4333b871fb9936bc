"""Whisper's own decoder vs. its zero-shot baseline vs. the CTC head, on connected FSDD digit strings.

    python -m experiments.whisper_asr.run                     # runs the cells results.csv lacks, then the tables
    python -m experiments.whisper_asr.run --table             # only rebuild README's tables from results.csv
    python -m experiments.whisper_asr.run --only zero_shot    # one method
    python -m experiments.whisper_asr.run --eval-per-speaker 20 --seeds 0   # a smaller study (say so)

Data: ``data=fsdd_digits`` as in ``experiment=fsdd_digits_ctc`` (train george + jackson, val nicolas,
test yweweler; 2-7 digits a string). Budgets: ~50 training strings (25 per speaker) and all (400 per
speaker). Every choice is made on val (the window: ``backbone.pad_to_30s``, ``window_choice``; the
checkpoint: best val/wer).
Each cell runs in its own process (``--cell``), so its peak RSS is its own; finished cells are merged
into results.csv atomically, so a killed study loses one cell and a restart skips what is done.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import resource
import statistics
import subprocess
import sys
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
        ov += ["+callbacks.step_timer._target_=experiments.whisper_asr.run.StepTimer"]
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
    # Hydra imported this file under its module name (a second copy when run as __main__): its timer.
    timer = getattr(importlib.import_module("experiments.whisper_asr.run").StepTimer, "instance", None)
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


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict]) -> None:
    from asr_transfer.utils.atomic import atomic_open

    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def key(r: dict) -> tuple:
    return (r["method"], r["budget"], str(r["seed"]), str(r["n_eval"]))


def _num(rows: list[dict], col: str, digits: int = 3) -> str:
    """Mean over seeds, with the seed standard deviation when there are several."""
    xs = [float(r[col]) for r in rows if r.get(col) not in ("", None)]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}g}"
    return f"{statistics.fmean(xs):.{digits}g} ± {statistics.stdev(xs):.2g}"


def _ci(r: dict, metric: str) -> str:
    lo, hi = r.get(f"{metric}_ci95_low"), r.get(f"{metric}_ci95_high")
    return f"[{float(lo):.3g}, {float(hi):.3g}]" if lo not in ("", None) and hi not in ("", None) else "-"


def table(rows: list[dict]) -> str:
    """README's table: one line per (method, budget), mean ± sd over seeds, the first seed's 95 % bootstrap
    intervals over test clips (``metrics.json``), numbers from results.csv."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"], r["n_eval"]), []).append(r)
    cols = ["val_wer", "test_wer", "test_wer_raw", "test_der", "test_cer", "test_hallucination", "s_per_step",
            "peak_rss_mb", "ckpt_mb", "store_kb_per_clip", "eval_s", "cpu_s"]  # fmt: skip
    head = cols[:2] + ["test_wer 95 % CI (seed 0)"] + cols[2:4] + ["test_der 95 % CI (seed 0)"] + cols[4:]
    lines = ["| method | strings | eval/speaker | seeds | " + " | ".join(head) + " |",
             "|---" * (len(head) + 4) + "|"]  # fmt: skip
    order = {m: i for i, m in enumerate(METHODS)}
    for (method, budget, n_eval), rs in sorted(
        groups.items(), key=lambda g: (g[0][1] != "-", g[0][1], order[g[0][0]])
    ):
        rs = sorted(rs, key=lambda r: int(r["seed"]))
        vals = [_num(rs, c) for c in cols]
        vals = vals[:2] + [_ci(rs[0], "test_wer")] + vals[2:4] + [_ci(rs[0], "test_der")] + vals[4:]
        n = "-" if budget == "-" else str(2 * BUDGETS[budget])
        lines.append(f"| {method} | {n} | {n_eval} | {len(rs)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def window_choice(rows: list[dict]) -> tuple[dict[str, str], str]:
    """``backbone.pad_to_30s`` chosen on val WER (``selection.choose_on_val``), zero-shot and after
    fine-tuning the decoder (budget 50, seed 0), each window's cells side by side; the preset's default
    follows the fine-tuned choice (what ``experiment=fsdd_digits_whisper`` trains)."""
    from asr_transfer.selection import choose_on_val

    cells = [
        {**r, "stage": "fine-tuned" if METHODS[r["method"]][1] else "zero-shot", "window": WINDOWS[r["method"]],
         "val/wer": r["val_wer"]}
        for r in rows
        if r["method"] in WINDOWS and r["seed"] == "0" and r["budget"] in ("-", "50")
    ]  # fmt: skip
    if not cells:
        return {}, "(not run yet)"
    both = [r for r in cells if {c["window"] for c in cells if c["stage"] == r["stage"]} == {"real", "30s"}]
    chosen = (
        {g[0]: w for g, w in choose_on_val(both, "val/wer", "window", ("stage",), mode="min").items()}
        if both
        else {}
    )
    lines = ["| stage | window | val WER | val hallucination | test WER [95 % CI] | test DER [95 % CI] "
             "| test hallucination | store KB/clip | CPU s | wall s |", "|---" * 10 + "|"]  # fmt: skip
    for r in sorted(cells, key=lambda r: (r["stage"] != "zero-shot", r["window"] != "real")):
        mark = " **(chosen on val)**" if chosen.get(r["stage"]) == r["window"] else ""
        lines.append(
            f"| {r['stage']} | {r['window']}{mark} | {float(r['val_wer']):.3g} | {float(r['val_hallucination']):.2g} "
            f"| {float(r['test_wer']):.3g} {_ci(r, 'test_wer')} | {_num([r], 'test_der')} {_ci(r, 'test_der')} "
            f"| {float(r['test_hallucination']):.2g} | {r['store_kb_per_clip'] or '-'} | {r.get('cpu_s') or '-'} "
            f"| {r['seconds']} |"
        )
    return chosen, "\n".join(lines)


def write_tables(rows: list[dict]) -> None:
    from asr_transfer.utils.atomic import replace_between

    readme = HERE / "README.md"
    replace_between(readme, "<!-- table:start -->", "<!-- table:end -->", table(rows))
    chosen, text = window_choice(rows)
    replace_between(readme, "<!-- window:start -->", "<!-- window:end -->", text)
    print(table(rows), text, f"window chosen on val: {chosen}", sep="\n\n")


def plan(methods: list[str], budgets: list[str], seeds: list[int], n_eval: int) -> list[dict]:
    """Cells in priority order: zero-shot (one seed), then per budget and seed every training method; the
    window question's real-length fine-tuning cell only at budget 50, seed 0."""
    cells = [{"method": m, "budget": "50", "seed": 0, "n_eval": n_eval} for m in methods if not METHODS[m][1]]
    for budget in budgets:
        for seed in seeds:
            for m in methods:
                if METHODS[m][1] and (m not in WINDOWS or WINDOWS[m] == "30s" or (budget, seed) == ("50", 0)):
                    cells.append({"method": m, "budget": budget, "seed": seed, "n_eval": n_eval})
    return cells


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cell", help="internal: one cell as JSON, its row printed as JSON")
    p.add_argument("--table", action="store_true")
    p.add_argument("--only", nargs="*", default=list(METHODS))
    p.add_argument("--budgets", nargs="*", default=list(BUDGETS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--eval-per-speaker", type=int, default=100)
    args = p.parse_args()
    if args.cell:
        print("ROW " + json.dumps(cell(**json.loads(args.cell))))
        return
    results = HERE / "results.csv"
    if not args.table:
        for c in plan(args.only, args.budgets, args.seeds, args.eval_per_speaker):
            row_key = (
                c["method"],
                c["budget"] if METHODS[c["method"]][1] else "-",
                str(c["seed"]),
                str(c["n_eval"]),
            )
            if row_key in {key(r) for r in read_csv(results)}:
                continue
            out = subprocess.run(
                [sys.executable, "-m", "experiments.whisper_asr.run", "--cell", json.dumps(c)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            rows = [json.loads(x[4:]) for x in out.stdout.splitlines() if x.startswith("ROW ")]
            if not rows:
                print(f"cell {c} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                continue
            write_csv(results, [r for r in read_csv(results) if key(r) != row_key] + rows)
            print(rows[0], flush=True)
    write_csv(results, [backfill(r) for r in read_csv(results)])
    write_tables(read_csv(results))


if __name__ == "__main__":
    main()
