"""Features stage at scale: memory, time per clip, disk vs estimate, a SIGKILLed pass, DDP, CTC epoch cost.

    python -m experiments.cache_scale.run                       # 2k and 16k clips, kill at 16k, DDP at 2k, CTC
    python -m experiments.cache_scale.run --sizes 2000 16000 64000 --kill-size 64000

Corpora are distinct-file copies of the shared FSDD clips (``../shared/data/fsdd``, 2000 clips)
under new names, split 80/10/10. Every run is ``train.py head=attentive`` (a frames cache) with
frozen Whisper tiny.en for one epoch, in a fresh process; peak RSS is that process's
``ru_maxrss``. Work files go to ``$CACHE_SCALE_WORK`` (default /tmp/cache_scale). Results:
``results-<experiment>.csv`` beside this script (appended, with the machine's load); README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FSDD = (ROOT / ".." / "shared" / "data" / "fsdd" / "recordings").resolve()
WORK = Path(os.environ.get("CACHE_SCALE_WORK", "/tmp/cache_scale"))


def corpus(n: int) -> dict[str, Path]:
    """``n`` distinct files (copies of FSDD clips under new names) and train/val/test manifests."""
    folder = WORK / f"corpus-{n}"
    manifests = {s: folder / f"{s}.jsonl" for s in ("train", "val", "test")}
    if (folder / "done").is_file():
        return manifests
    sources = sorted(FSDD.glob("*.wav"))
    durations = {p: sf.info(str(p)).duration for p in sources}
    rows: dict[str, list] = {s: [] for s in manifests}
    for k in range(n):
        src = sources[k % len(sources)]
        dst = folder / "audio" / f"{k // 1000:03d}" / f"{k:06d}_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        split = {8: "val", 9: "test"}.get(k % 10, "train")
        rows[split].append(
            {"audio_filepath": str(dst), "duration": durations[src], "label": src.name.split("_")[0]}
        )
    for s, path in manifests.items():
        path.write_text("".join(json.dumps(r) + "\n" for r in rows[s]))
    (folder / "done").write_text("ok")
    return manifests


def overrides(m: dict[str, Path], features: Path, out: Path) -> list[str]:
    return [
        "data=manifest",
        f"data.train_manifest={m['train']}",
        f"data.val_manifest={m['val']}",
        f"data.test_manifest={m['test']}",
        "head=attentive",
        "trainer.max_epochs=1",
        f"features.dir={features}",
        f"paths.cache_dir={WORK}/cache",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={out}",
    ]


def committed_clips(features: Path) -> int:
    return sum(len(json.loads(p.read_text())["clips"]) for p in features.glob("*/r*.json"))


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def train(args: list[str], out: Path, kill_at: int | None = None, features: Path | None = None) -> dict:
    """One ``train.py`` process: wall time, peak RSS (GB) of the whole run and of its features pass
    (sampled from /proc every 0.2 s until the log says the pass is done), metrics; SIGKILL once
    ``kill_at`` clips are committed."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "stdout.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "train.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        killed, pass_peak, pass_done = False, 0, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps the child once, with its usage
            if pid:
                break
            time.sleep(0.2)
            if not pass_done:
                pass_peak = max(pass_peak, rss_bytes(proc.pid))
                pass_done = "features: rank" in (out / "stdout.log").read_text(errors="replace")
            if kill_at is not None and not killed and committed_clips(features) >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
    metrics = out / "metrics.json"
    return {
        "wall_s": time.perf_counter() - t0,
        "rss_gb": usage.ru_maxrss / 1e6,
        "pass_rss_gb": pass_peak / 1e9,
        "killed": killed,
        "status": status,
        "metrics": json.loads(metrics.read_text()) if metrics.is_file() and not killed else {},
    }


def passes(features: Path) -> list[dict]:
    return [json.loads(x) for p in features.glob("*/passes.jsonl") for x in p.read_text().splitlines() if x]


def disk_bytes(features: Path) -> int:
    return sum(p.stat().st_size for p in features.glob("*/r*.bin"))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def record(row: dict) -> None:
    row = {"time": time.strftime("%Y-%m-%d %H:%M"), "load_1_5_15": load(), **row}
    path = HERE / f"results-{row['experiment'].removesuffix('_warm')}.csv"  # one column set per file
    rows = list(csv.DictReader(open(path))) if path.is_file() else []
    fields = list(dict.fromkeys([*(rows[0] if rows else {}), *row]))  # a new column joins the old ones
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows([*rows, row])
    os.replace(tmp, path)
    print(json.dumps(row), flush=True)


def scale(n: int) -> dict:
    m = corpus(n)
    features = WORK / f"features-{n}"
    shutil.rmtree(features, ignore_errors=True)
    run = train(overrides(m, features, WORK / f"run-{n}"), WORK / f"run-{n}")
    p = passes(features)[0]
    row = {
        "experiment": "scale",
        "clips": n,
        "peak_rss_gb": round(run["rss_gb"], 3),
        "pass_peak_rss_gb": round(run["pass_rss_gb"], 3),
        "wall_s": round(run["wall_s"], 1),
        "pass_s": round(p["seconds"], 1),
        "pass_ms_per_clip": round(1000 * p["seconds"] / p["clips"], 2),
        "estimate_s": round(p["estimate_s"] or 0, 1),
        "disk_mb": round(disk_bytes(features) / 1e6, 1),
        "estimate_mb_first_batches": round((p["estimate_bytes"] or 0) / 1e6, 1),
        "estimate_mb_durations": round(p.get("prior_bytes", 0) / 1e6, 1),
        "shards": p["shards"],
        "test_acc": run["metrics"].get("test/acc"),
        "test_loss": run["metrics"].get("test/loss"),
    }
    record(row)
    return row


def kill(n: int, reference: dict, shard_mb: float) -> None:
    """SIGKILL the pass at about half, rerun: clips encoded in total and the metrics vs the uninterrupted run."""
    m = corpus(n)
    features = WORK / f"features-{n}-kill"
    shutil.rmtree(features, ignore_errors=True)
    out = WORK / f"run-{n}-kill"
    args = [*overrides(m, features, out), f"features.shard_mb={shard_mb}"]
    first = train(args, out, kill_at=n // 2, features=features)
    before = committed_clips(features)
    second = train(args, out)
    again = sum(p["clips"] for p in passes(features))  # the killed pass never wrote its record
    per_shard = max(len(json.loads(p.read_text())["clips"]) for p in features.glob("*/r*.json"))
    record(
        {
            "experiment": "kill",
            "clips": n,
            "shard_mb": shard_mb,
            "killed": first["killed"],
            "committed_at_kill": before,
            "encoded_after": again,
            "encoded_total": before + again,
            "bound_n_plus_shard": n + per_shard,
            "test_acc": second["metrics"].get("test/acc"),
            "test_loss": second["metrics"].get("test/loss"),
            "reference_test_acc": reference.get("test_acc"),
            "reference_test_loss": reference.get("test_loss"),
        }
    )


def ddp(n: int, warm: bool = False) -> None:
    """trainer=ddp_cpu devices=2 vs one process, made equivalent: one step per epoch over every training
    clip (one batch, or two halves whose mean gradients DDP averages), no dropout, eval batches that
    split evenly over the ranks. ``warm``: keep the features each run stored before (the metric check
    then costs no encoding; the rank split is what a cold run logs)."""
    m = corpus(n)
    train_clips = len(m["train"].read_text().splitlines())
    evals = len(m["test"].read_text().splitlines()) // 2
    runs = {}
    for name, extra in {
        "single": [f"data.batch_size={train_clips}"],
        "ddp": ["trainer=ddp_cpu", "trainer.devices=2", f"data.batch_size={train_clips // 2}"],
    }.items():
        features = WORK / f"features-{n}-{name}"
        if not warm:
            shutil.rmtree(features, ignore_errors=True)
        out = WORK / f"run-{n}-{name}"
        shutil.rmtree(out, ignore_errors=True)
        common = ["head.dropout=0.0", "seed=3", "trainer.max_epochs=30", "optimizer.lr=0.01"]
        runs[name] = train(
            [*overrides(m, features, out), *common, f"data.eval_batch_size={evals}", *extra], out
        )
        text = (out / "train.log").read_text() if (out / "train.log").is_file() else ""
        runs[name]["ranks"] = [line.split("features: ")[1] for line in text.splitlines() if "encoded" in line]
    s, d = runs["single"]["metrics"], runs["ddp"]["metrics"]
    record(
        {
            "experiment": "ddp_cpu_2" + ("_warm" if warm else ""),
            "clips": n,
            "rank_log": " | ".join(runs["ddp"]["ranks"]),
            "single_test_acc": s.get("test/acc"),
            "ddp_test_acc": d.get("test/acc"),
            "single_test_loss": s.get("test/loss"),
            "ddp_test_loss": d.get("test/loss"),
            "single_wall_s": round(runs["single"]["wall_s"], 1),
            "ddp_wall_s": round(runs["ddp"]["wall_s"], 1),
        }
    )


def earlier(n: int) -> dict | None:
    """The latest recorded uninterrupted run of ``n`` clips (the kill experiment's reference)."""
    path = HERE / "results-scale.csv"
    if not path.is_file():
        return None
    rows = [r for r in csv.DictReader(open(path)) if r["experiment"] == "scale" and int(r["clips"]) == n]
    return {k: float(rows[-1][k]) for k in ("test_acc", "test_loss")} if rows else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 16000], help="scale runs (none: skip)")
    ap.add_argument("--kill-size", type=int, default=None, help="default: the largest size; 0 skips")
    ap.add_argument("--kill-shard-mb", type=float, default=64, help="shard size of the killed pass")
    ap.add_argument("--ddp-size", type=int, default=2000, help="0 skips")
    ap.add_argument("--ddp-warm", action="store_true", help="reuse the DDP runs' stored features")
    ap.add_argument("--ctc", action=argparse.BooleanOptionalAction, default=True)
    a = ap.parse_args()
    rows = {n: scale(n) for n in a.sizes}
    kill_size = max(a.sizes, default=0) if a.kill_size is None else a.kill_size
    if kill_size:
        kill(kill_size, rows.get(kill_size) or earlier(kill_size) or scale(kill_size), a.kill_shard_mb)
    if a.ddp_size:
        ddp(a.ddp_size, a.ddp_warm)
    if a.ctc:
        subprocess.run([sys.executable, "-m", "experiments.cache_scale.ctc_epoch"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
