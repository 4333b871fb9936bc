"""Throughput benchmark (issue 5): asr_transfer vs the transformers Trainer recipe, side by side.

Every job is a separate process, run one after another (never concurrently) and timed whole:
  C  floor.py: one bare Whisper tiny.en encoder forward over all the audio (the floor)
  A  frozen Whisper tiny.en probe, train on three speakers, test on the fourth:
       asr_transfer with a cold feature cache, the same command again (warm cache), the recipe
  B  full fine-tuning of a random base-size wav2vec2 for a fixed number of steps: both systems
Writes results.csv and results.md next to this file (results-quick.* with --quick).

    python -m experiments.throughput.run            # the full benchmark (~50 min on 2 cores, ~42 of them the recipe of job A)
    python -m experiments.throughput.run --quick    # a few clips and steps: checks the harness
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from measure import load_average, machine, measure

from asr_transfer.utils.atomic import write_text
from report import comparisons, markdown, print_tables, write_csv

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"


def select_recordings(src: Path, speakers: list[str], per_digit: int | None, work: Path) -> Path:
    """``src`` itself when it holds exactly these speakers and all clips; else a folder of symlinks."""
    files = sorted(src.glob("*_*_*.wav"))
    present = {f.stem.split("_")[1] for f in files}
    missing = set(speakers) - present
    if missing:
        sys.exit(f"--recordings {src}: no clips by {sorted(missing)} (it has {sorted(present)})")
    if present == set(speakers) and per_digit is None:
        return src
    dst = work / "recordings"
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        digit, speaker, index = f.stem.split("_")
        if speaker in speakers and (per_digit is None or int(index) < per_digit):
            (dst / f.name).symlink_to(f)
    return dst


def jobs(args, rec: Path, work: Path) -> list[dict]:
    """Each job: key, system, command, the JSON it leaves behind and how many clips it trains on."""
    py, test = sys.executable, args.test_speaker
    speakers = [*args.train_speakers.split(","), test]
    precision = [] if args.precision == "32" else ["trainer.precision=bf16-mixed"]
    hf_precision = [] if args.precision == "32" else ["--bf16"]
    common = [
        f"data.corpus.root={rec}",
        "data.corpus.val_speakers=[]",
        f"data.corpus.test_speakers=[{test}]",
        f"paths.cache_dir={work}/cache",  # manifests too: the cold run starts from nothing
    ]
    probe = [
        py, "train.py", "experiment=fsdd_probe", *common,
        f"backbone.name_or_path={args.whisper}",
        f"trainer.max_epochs={args.epochs}", f"data.batch_size={args.batch_size}", f"optimizer.lr={args.lr}",
        f"features.dir={work}/features",
        *precision,
    ]  # fmt: skip
    recipe = [
        py,
        str(HERE / "hf_trainer_recipe.py"),
        "--recordings",
        str(rec),
        "--train-speakers",
        args.train_speakers,
        *hf_precision,
    ]

    def finetune(name: str, batching: list[str]) -> list[str]:
        return [
            py, "train.py", "backbone=hf", "backbone.name_or_path=wav2vec2-base-random", "backbone.pretrained=false",
            "backbone.model_type=wav2vec2", "backbone.freeze=none", "features.mode=off",
            "++backbone.layer_drop=0.1",  # the recipe's Wav2Vec2Config() default (asr_transfer's default is 0)
            *common, "test=false",
            f"++trainer.max_steps={args.steps}", *batching,
            f"optimizer.lr={args.b_lr}", f"task.backbone_lr={args.b_lr}",
            "+callbacks.step_timer._target_=lightning_step_timer.StepTimer",
            f"+callbacks.step_timer.out={work}/{name}/step_times.json",
            f"hydra.run.dir={work}/{name}",
            *precision,
        ]  # fmt: skip

    clips = [f"data.batch_size={args.b_batch_size}"]
    budget = ["data.batch_size=null", f"data.max_batch_seconds={args.b_batch_seconds}"]
    return [
        {"job": "C", "system": "bare encoder forward", "out": work / "C.json",
         "cmd": [py, str(HERE / "floor.py"), "--recordings", str(rec), "--model", args.whisper,
                 "--speakers", ",".join(speakers), "--out", str(work / "C.json")]},
        {"job": "A", "system": "asr_transfer (cold cache)", "out": work / "A-asr-cold/metrics.json",
         "cmd": [*probe, f"hydra.run.dir={work}/A-asr-cold"]},
        {"job": "A", "system": "asr_transfer (warm cache)", "out": work / "A-asr-warm/metrics.json",
         "cmd": [*probe, f"hydra.run.dir={work}/A-asr-warm"]},
        {"job": "A", "system": "Trainer recipe", "out": work / "A-hf.json",
         "cmd": [*recipe, "--job", "A", "--model", args.whisper, "--test-speakers", test,
                 "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                 "--work-dir", str(work / "A-hf"), "--out", str(work / "A-hf.json")]},
        {"job": "B", "system": "asr_transfer", "out": work / "B-asr/step_times.json", "cmd": finetune("B-asr", clips)},
        {"job": "B", "system": f"asr_transfer ({args.b_batch_seconds:g} s batches)",
         "out": work / "B-asr-budget/step_times.json", "cmd": finetune("B-asr-budget", budget)},
        {"job": "B", "system": "Trainer recipe", "out": work / "B-hf.json",
         "cmd": [*recipe, "--job", "B", "--max-steps", str(args.steps), "--batch-size", str(args.b_batch_size),
                 "--lr", str(args.b_lr), "--work-dir", str(work / "B-hf"), "--out", str(work / "B-hf.json")]},
    ]  # fmt: skip


def parse(job: dict, n_train: int, batch: int) -> dict:
    """Test accuracy and step timings from the JSON the job wrote; {} if it wrote none."""
    path = Path(job["out"])
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    row = {
        "test_acc": data.get("test/acc", data.get("test_acc")),
        "train_s": data.get("train_s", data.get("train_loop_s")),
        "test_s": data.get("test_s"),
        "s_per_step": data.get("s_per_step"),
        "steps": data.get("steps"),
        "clips": data.get("clips"),
        "gpu_peak_mib": data.get("gpu_peak_mib"),
    }
    if job["job"] == "B" and row["s_per_step"]:
        # batches per epoch as the run's own loader counted them (a seconds budget makes fewer)
        row["steps_per_epoch"] = data.get("steps_per_epoch") or math.ceil(n_train / batch)
        row["s_per_epoch"] = row["s_per_step"] * row["steps_per_epoch"]
    if job["system"] == "Trainer recipe" and job["job"] == "A":
        row["detail"] = f"train {data['train_s']:.0f} s, test {data['test_s']:.0f} s"
    if job["job"] == "B" and data.get("steps"):
        timed = data["steps"] - data["warmup_steps"]
        row["detail"] = (
            f"{data['steps']} steps, mean of the last {timed}, median {data['s_per_step_median']:.2f} s, "
            f"{row['steps_per_epoch']} steps/epoch"
        )
    if job["job"] == "C":
        row["detail"] = (
            f"{data['clips']} clips, {data['audio_s']:.0f} s audio, forward {data['forward_s']:.1f} s"
        )
    return {k: v for k, v in row.items() if v is not None}


def prewarm(rec: Path, env: dict) -> None:
    """Untimed: read every clip and import the heavy libraries once, so the first timed job does not
    pay for a cold OS page cache that later jobs get for free."""
    for f in rec.glob("*.wav"):
        f.read_bytes()
    measure([sys.executable, "-c", "import torch, torchaudio, transformers, lightning"],
            Path(os.devnull), REPO, env, 600)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", default="A,B,C", help="comma-separated subset of A,B,C")
    p.add_argument(
        "--recipes-first",
        action="store_true",
        help="run the long Trainer-recipe jobs first (asr_transfer's cold/warm/floor stay in order)",
    )
    p.add_argument(
        "--skip-recipes",
        action="store_true",
        help="asr_transfer and the floor only (while iterating; the comparison needs the recipes)",
    )
    p.add_argument(
        "--quick", action="store_true", help="1 clip per digit and speaker, 1 epoch in A, 3 steps in B"
    )
    p.add_argument("--recordings", type=Path, default=SHARED / "data/fsdd/recordings")
    p.add_argument("--whisper", default=str(SHARED / "models/whisper-tiny.en"))
    p.add_argument("--train-speakers", default="george,jackson,nicolas")
    p.add_argument("--test-speaker", default="yweweler")
    p.add_argument("--epochs", type=int, default=None, help="job A epochs (default 3, 1 with --quick)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=None, help="job B steps (default 60, 3 with --quick)")
    p.add_argument("--b-batch-size", type=int, default=8)
    p.add_argument(
        "--b-batch-seconds",
        type=float,
        default=8.0,
        help="job B, second asr_transfer run: padded-seconds budget per batch (fairseq's max_tokens); "
        "8 = the recipe's largest possible batch (8 clips x the longest FSDD clip, 1.0 s)",
    )
    p.add_argument("--b-lr", type=float, default=1e-4)
    p.add_argument(
        "--precision",
        choices=["32", "bf16-mixed"],
        default="32",
        help="both systems: fp32, or bf16 autocast (trainer.precision=bf16-mixed / the recipe's --bf16)",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds per job")
    p.add_argument("--work-dir", type=Path, help="run dirs, caches and logs (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir even when every job succeeded")
    p.add_argument("--out-dir", type=Path, default=HERE)
    args = p.parse_args()
    args.recordings = args.recordings.resolve()  # symlinks and the jobs' cwd need absolute paths
    if Path(args.whisper).exists():
        args.whisper = str(Path(args.whisper).resolve())
    args.steps = args.steps or (3 if args.quick else 60)
    args.epochs = args.epochs or (1 if args.quick else 3)
    selected = {j.strip().upper() for j in args.jobs.split(",")}
    if not selected <= {"A", "B", "C"}:
        p.error(f"--jobs {args.jobs}: choose from A, B, C")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # measure() then kills the running job
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="throughput-"))
    train_speakers = args.train_speakers.split(",")
    rec = select_recordings(
        args.recordings, [*train_speakers, args.test_speaker], 1 if args.quick else None, work
    )
    n_train = sum(1 for f in rec.glob("*.wav") if f.stem.split("_")[1] in train_speakers)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}  # local assets only, both sides
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(REPO), env.get("PYTHONPATH")]))
    info = machine()
    info["load_before"] = load_average()
    prewarm(rec, env)

    rows = []
    plan = list(jobs(args, rec, work))
    if args.recipes_first:
        plan.sort(key=lambda j: "Trainer" not in j["system"])  # stable: the rest keep their order
    for job in plan:
        if job["job"] not in selected or (args.skip_recipes and "Trainer" in job["system"]):
            continue
        log = work / "logs" / f"{job['job']}-{job['system'].split()[0]}-{len(rows)}.log"
        print(f"[{job['job']}] {job['system']}: running (log: {log})", flush=True)
        m = measure(job["cmd"], log, REPO, env, args.timeout)
        row = {"job": job["job"], "system": job["system"], "wall_s": m.wall_s, "peak_rss_mib": m.peak_rss_mib,
               "tree_peak_mib": m.tree_peak_mib, "returncode": m.returncode, "log": str(log)}  # fmt: skip
        row.update(parse(job, n_train, args.b_batch_size))
        if m.returncode != 0:
            row["detail"] = "TIMED OUT" if m.timed_out else f"FAILED (exit {m.returncode}), see log"
        print(f"    {m.wall_s:.1f} s, peak RSS {m.peak_rss_mib:.0f} MiB, exit {m.returncode}", flush=True)
        rows.append(row)
    info["load_after"] = load_average()
    info["mode"] = "quick" if args.quick else "full"
    info["precision"] = args.precision

    comps = comparisons(rows)
    stem = "results-quick" if args.quick else "results"
    print_tables(rows, comps, f"Throughput ({info['mode']}, {info['cores']} cores, {info['cpu']})")
    write_csv(args.out_dir / f"{stem}.csv", rows, comps)
    write_text(args.out_dir / f"{stem}.md", markdown(rows, comps, info))
    print(f"wrote {args.out_dir / stem}.csv and .md; machine: {info}")
    failed = [r for r in rows if r["returncode"] != 0]
    if failed or args.keep or args.work_dir:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
