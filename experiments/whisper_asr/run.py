"""Whisper's own decoder vs. its zero-shot baseline vs. the CTC head, on connected FSDD digit strings.

    python experiments/whisper_asr/run.py                     # runs the cells results.csv lacks, then the table
    python experiments/whisper_asr/run.py --table             # only rebuild README's table from results.csv
    python experiments/whisper_asr/run.py --only zero_shot    # one method
    python experiments/whisper_asr/run.py --eval-per-speaker 20 --seeds 0   # a smaller study (say so)

Data: ``data=fsdd_digits`` as in ``experiment=fsdd_digits_ctc`` (train george + jackson, val nicolas,
test yweweler; 2-7 digits a string). Budgets: ~50 training strings (25 per speaker) and all (400 per
speaker). Every choice is made on val (the window: ``backbone.pad_to_30s``; the checkpoint: best val/wer).
Each cell runs in its own process (``--cell``), so its peak RSS is its own; finished cells are merged
into results.csv atomically, so a killed study loses one cell and a restart skips what is done.
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

WORK = ROOT / ".cache" / "experiments" / "whisper_asr"  # corpus, stored states, run dirs
BUDGETS = {"50": 25, "all": 400}  # training strings per training speaker (2 speakers)
METHODS = {  # method -> (preset overrides, trains?)
    "zero_shot": (["experiment=fsdd_digits_whisper"], False),
    "zero_shot_30s": (["experiment=fsdd_digits_whisper", "backbone.pad_to_30s=true"], False),
    "decoder": (["experiment=fsdd_digits_whisper"], True),  # frozen encoder, stored states
    "lora": (
        [
            "experiment=fsdd_digits_whisper",
            "adapter=lora",
            "decoder_adapter=lora",
            "head.freeze=all",
            "optimizer.lr=1e-3",
            "task.backbone_lr=1e-3",
        ],
        True,
    ),  # fmt: skip
    "full": (["experiment=fsdd_digits_whisper", "backbone.freeze=none", "task.backbone_lr=1e-5"], True),
    "ctc": (["experiment=fsdd_digits_ctc"], True),
}
FIELDS = ["method", "budget", "seed", "n_train", "n_eval", "val_wer", "val_wer_raw", "val_cer", "test_wer",
          "test_wer_raw", "test_cer", "test_cer_raw", "test_hallucination", "trainable", "s_per_step",
          "peak_rss_mb", "ckpt_mb", "seconds"]  # fmt: skip


class StepTimer:
    """Seconds per optimizer step (training batches only, not validation or decoding)."""

    def __new__(cls):
        import lightning as L

        class _Timer(L.Callback):
            def __init__(self):
                self.total, self.steps, self.t0 = 0.0, 0, 0.0

            def on_train_batch_start(self, *args):
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, *args):
                self.total += time.perf_counter() - self.t0
                self.steps += 1

        cls.instance = _Timer()
        return cls.instance


def cell(method: str, budget: str, seed: int, n_eval: int, extra: tuple = (), tag: str = "") -> dict:
    from hydra import compose, initialize_config_dir

    import asr_transfer.config  # noqa: F401  (resolvers)
    from asr_transfer.pipeline.evaluate import zero_shot
    from asr_transfer.pipeline.train import train

    preset, trains = METHODS[method]
    run_dir = WORK / "runs" / f"{method}-{budget}-seed{seed}-n{n_eval}{tag}"
    ov = [*preset, *extra, f"seed={seed}", f"paths.cache_dir={WORK}", f"paths.output_dir={run_dir}",
          f"data.corpus.train_per_speaker={BUDGETS[budget]}", f"data.corpus.eval_per_speaker={n_eval}",
          "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]  # fmt: skip
    if trains:
        ov += ["+callbacks.step_timer._target_=__main__.StepTimer"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=ov)
    t0 = time.perf_counter()
    if trains:
        train(cfg)
    else:
        zero_shot(cfg)
    m = json.loads((run_dir / "metrics.json").read_text())
    timer = getattr(StepTimer, "instance", None)
    ckpt = sorted((run_dir / "checkpoints").glob("best-*.ckpt")) if trains else []
    return {
        "method": method, "budget": budget if trains else "-", "seed": seed, "n_train": 2 * BUDGETS[budget] if trains else 0,
        "n_eval": n_eval, "val_wer": m.get("val/wer"), "val_wer_raw": m.get("val/wer_raw"),
        "val_cer": m.get("val/cer"), "test_wer": m.get("test/wer"), "test_wer_raw": m.get("test/wer_raw"),
        "test_cer": m.get("test/cer"), "test_cer_raw": m.get("test/cer_raw"),
        "test_hallucination": m.get("test/hallucination", ""), "trainable": int(m.get("params/trainable", 0)),
        "s_per_step": round(timer.total / max(timer.steps, 1), 4) if timer else "",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ckpt_mb": round(ckpt[0].stat().st_size / 2**20, 1) if ckpt else "",
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


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


def table(rows: list[dict]) -> str:
    """README's table: one line per (method, budget), means over seeds, numbers from results.csv."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"], r["n_eval"]), []).append(r)
    cols = ["val_wer", "test_wer", "test_wer_raw", "test_cer", "test_hallucination", "s_per_step",
            "peak_rss_mb", "ckpt_mb"]  # fmt: skip
    lines = ["| method | strings | eval/speaker | seeds | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 4) + "|"]  # fmt: skip
    for (method, budget, n_eval), rs in sorted(groups.items()):
        vals = []
        for c in cols:
            xs = [float(r[c]) for r in rs if r.get(c) not in ("", None)]
            vals.append(f"{sum(xs) / len(xs):.3g}" if xs else "-")
        n = "-" if budget == "-" else str(2 * BUDGETS[budget])
        lines.append(f"| {method} | {n} | {n_eval} | {len(rs)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def write_table(rows: list[dict]) -> None:
    readme = HERE / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    if start in text and end in text:
        text = text[: text.index(start) + len(start)] + "\n" + table(rows) + "\n" + text[text.index(end) :]
        readme.write_text(text)
    print(table(rows))


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
        todo = []
        for method in args.only:
            trains = METHODS[method][1]
            for budget in args.budgets if trains else ["50"]:  # zero-shot: the small corpus (same val/test)
                for seed in args.seeds if trains else [0]:
                    todo.append(
                        {"method": method, "budget": budget, "seed": seed, "n_eval": args.eval_per_speaker}
                    )
        for c in todo:
            row_key = (
                c["method"],
                c["budget"] if METHODS[c["method"]][1] else "-",
                str(c["seed"]),
                str(c["n_eval"]),
            )
            if row_key in {key(r) for r in read_csv(results)}:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--cell", json.dumps(c)], capture_output=True, text=True
            )
            rows = [json.loads(x[4:]) for x in out.stdout.splitlines() if x.startswith("ROW ")]
            if not rows:
                print(f"cell {c} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                continue
            write_csv(results, [r for r in read_csv(results) if key(r) != row_key] + rows)
            print(rows[0], flush=True)
    write_table(read_csv(results))


if __name__ == "__main__":
    main()
