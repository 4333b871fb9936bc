"""Job D (issue 14): LoRA vs full fine-tuning of a random base-size wav2vec2, side by side in one run.

Both sides are job B's asr_transfer command (HF wav2vec2 base config, random weights, LayerDrop
0.1, length-sorted batches of 8 clips, a fixed number of steps), one process each, one after
another; LoRA adds ``backbone.freeze=all adapter=lora`` (conf/adapter/lora.yaml: rank 8 on
q/k/v/out and both feed-forward linears). Reported per side: trainable parameters (count and %,
from metrics.json), s/step (mean after 2 warm-up steps), peak RSS (the kernel's high-water mark),
last.ckpt size; then the ratios against the issue's targets.

    python -m experiments.throughput.lora              # 60 steps each (the lead's command, on a quiet machine)
    python -m experiments.throughput.lora --steps 12   # shorter, for a loaded machine
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

from measure import load_average, machine, measure
from run import REPO, SHARED, select_recordings

HERE = Path(__file__).resolve().parent
TARGETS = {  # LoRA / full fine-tuning, issue 14 "What it must show"
    "trainable_pct": ("<=", 2.0),
    "s_per_step_ratio": ("<=", 0.7),
    "peak_rss_ratio": ("<=", 0.8),
    "ckpt_ratio": ("<=", 0.05),
}


def command(name: str, work: Path, rec: Path, args, extra: list[str]) -> list[str]:
    return [
        sys.executable, "train.py", "backbone=hf", "backbone.name_or_path=wav2vec2-base-random",
        "backbone.pretrained=false", "backbone.model_type=wav2vec2", "features.mode=off",
        "++backbone.layer_drop=0.1", *extra,
        f"data.corpus.root={rec}", "data.corpus.val_speakers=[]", f"data.corpus.test_speakers=[{args.test_speaker}]",
        f"paths.cache_dir={work}/cache", "test=false", f"++trainer.max_steps={args.steps}",
        f"data.batch_size={args.batch_size}", f"optimizer.lr={args.lr}", f"task.backbone_lr={args.lr}",
        "+callbacks.step_timer._target_=lightning_step_timer.StepTimer",
        f"+callbacks.step_timer.out={work}/{name}/step_times.json", f"hydra.run.dir={work}/{name}",
    ]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--recordings", type=Path, default=SHARED / "data/fsdd/recordings")
    p.add_argument("--train-speakers", default="george,jackson,nicolas")
    p.add_argument("--test-speaker", default="yweweler")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per side")
    p.add_argument("--work-dir", type=Path, help="run dirs and logs (default: a temp dir, kept)")
    p.add_argument("--out-dir", type=Path, default=HERE)
    args = p.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="throughput-lora-"))
    rec = select_recordings(
        args.recordings.resolve(), [*args.train_speakers.split(","), args.test_speaker], None, work
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(REPO), env.get("PYTHONPATH")]))
    info = {**machine(), "load_before": load_average(), "steps": args.steps, "batch_size": args.batch_size}
    sides = {"full": ["backbone.freeze=none"], "lora": ["backbone.freeze=all", "adapter=lora"]}
    rows = {}
    for name, extra in sides.items():
        log = work / "logs" / f"D-{name}.log"
        print(f"[D] {name}: running (log: {log})", flush=True)
        m = measure(command(name, work, rec, args, extra), log, REPO, env, args.timeout)
        if m.returncode != 0:
            sys.exit(f"[D] {name} failed (exit {m.returncode}, timed out: {m.timed_out}); see {log}")
        timing = json.loads((work / name / "step_times.json").read_text())
        metrics = json.loads((work / name / "metrics.json").read_text())
        rows[name] = {
            "side": name,
            "trainable": int(metrics["params/trainable"]),
            "total": int(metrics["params/total"]),
            "trainable_pct": metrics["params/trainable_pct"],
            "s_per_step": timing["s_per_step"],
            "s_per_step_median": timing["s_per_step_median"],
            "peak_rss_mib": m.peak_rss_mib,
            "ckpt_mib": (work / name / "checkpoints" / "last.ckpt").stat().st_size / 2**20,
            "wall_s": m.wall_s,
        }
        print(f"    {rows[name]}", flush=True)
    info["load_after"] = load_average()
    full, lora = rows["full"], rows["lora"]
    ratios = {
        "trainable_pct": lora["trainable_pct"],
        "s_per_step_ratio": lora["s_per_step"] / full["s_per_step"],
        "peak_rss_ratio": lora["peak_rss_mib"] / full["peak_rss_mib"],
        "ckpt_ratio": lora["ckpt_mib"] / full["ckpt_mib"],
    }
    lines = [
        "# Job D: LoRA vs full fine-tuning (random wav2vec2 base, batches of 8 clips)",
        "",
        f"Machine: {info}",
        "",
        "| side | trainable | % | s/step (mean) | s/step (median) | peak RSS MiB | last.ckpt MiB | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['side']} | {r['trainable']:,} of {r['total']:,} | {r['trainable_pct']:.2f} | {r['s_per_step']:.2f} "
            f"| {r['s_per_step_median']:.2f} | {r['peak_rss_mib']:.0f} | {r['ckpt_mib']:.1f} | {r['wall_s']:.0f} |"
            for r in rows.values()
        ),
        "",
        "| LoRA / full | value | target | met |",
        "| --- | --- | --- | --- |",
        *(
            f"| {k} | {v:.3f} | {TARGETS[k][0]} {TARGETS[k][1]} | {'yes' if v <= TARGETS[k][1] else 'NO'} |"
            for k, v in ratios.items()
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out_dir / "results-lora.md").write_text(text)
    with open(args.out_dir / "results-lora.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(full))
        writer.writeheader()
        writer.writerows(rows.values())
    print(f"wrote {args.out_dir / 'results-lora.md'} and .csv; work dir kept: {work}")


if __name__ == "__main__":
    main()
