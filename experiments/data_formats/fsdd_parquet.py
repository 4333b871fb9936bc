"""FSDD from the hub format: parquet shards built from ../shared/data/fsdd reach data=fsdd's test/acc.

Builds ``<out>/data/{train,validation,test}-00000-of-00001.parquet`` as the hub stores an audio dataset
(an ``Audio`` column of the WAV files' bytes, ``label`` a ``ClassLabel`` of the digits, ``speaker``),
split like ``data=fsdd`` (val: nicolas, test: yweweler, the rest train; files in data=fsdd's order), then
runs both:

    python train.py experiment=fsdd_probe data=hf data.corpus.path=<out> data.corpus.speaker_column=speaker
    python train.py experiment=fsdd_probe

and records their test/acc in results_fsdd.csv and the README.

    nice -n 10 python experiments/data_formats/fsdd_parquet.py [--out DIR] [--build-only]

Resumable: a run whose metrics.json exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FSDD = (ROOT / ".." / "shared" / "data" / "fsdd" / "recordings").resolve()
CSV = HERE / "results_fsdd.csv"
SPLITS = {"validation": {"nicolas"}, "test": {"yweweler"}}


def build(out: Path, recordings: Path = FSDD) -> Path:
    """The parquet shards (atomically, once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Audio, ClassLabel, Features, Value

    from asr_transfer.utils.atomic import atomic_path

    digits = [str(d) for d in range(10)]
    features = Features({"audio": Audio(), "label": ClassLabel(names=digits), "speaker": Value("string")})
    files = sorted(recordings.glob("*_*_*.wav"))  # data=fsdd's order
    if not files:
        raise SystemExit(f"no FSDD recordings in {recordings}")
    by_split: dict[str, list[Path]] = {"train": [], "validation": [], "test": []}
    for f in files:
        speaker = f.stem.split("_")[1]
        split = next((s for s, who in SPLITS.items() if speaker in who), "train")
        by_split[split].append(f)
    for split, chosen in by_split.items():
        dest = out / "data" / f"{split}-00000-of-00001.parquet"
        if dest.is_file():
            continue
        table = pa.table(
            {
                "audio": [{"bytes": f.read_bytes(), "path": f.name} for f in chosen],
                "label": [digits.index(f.stem.split("_")[0]) for f in chosen],
                "speaker": [f.stem.split("_")[1] for f in chosen],
            },
            schema=features.arrow_schema,
        )
        with atomic_path(dest, suffix=".parquet") as tmp:
            pq.write_table(table, tmp, row_group_size=100)  # the hub's row groups for audio
    return out


def train(name: str, overrides: list[str], runs: Path, cache: Path) -> dict:
    out = runs / name
    metrics = out / "metrics.json"
    if not metrics.is_file():
        cmd = [sys.executable, "train.py", "experiment=fsdd_probe", *overrides]
        cmd += [
            f"hydra.run.dir={out}",
            f"paths.cache_dir={cache}",
            "trainer.enable_progress_bar=false",
            "callbacks.progress_bar=null",
        ]
        print(" ".join(cmd[1:]), flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return json.loads(metrics.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / ".cache" / "fsdd_parquet"), help="where the parquet goes")
    ap.add_argument("--runs", default=str(ROOT / ".cache" / "data_formats_runs"))
    ap.add_argument("--cache", default=str(ROOT / ".cache"), help="paths.cache_dir of both runs")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    out = build(Path(args.out))
    print(f"parquet: {out}")
    if args.build_only:
        return
    runs, cache = Path(args.runs), Path(args.cache)
    hf = train(
        "hf_parquet",
        ["data=hf", f"data.corpus.path={out}", "data.corpus.speaker_column=speaker"],
        runs,
        cache,
    )
    fsdd = train("fsdd", [], runs, cache)
    from asr_transfer.utils.atomic import write_csv

    rows = [
        {
            "data": "data=hf (parquet from ../shared/data/fsdd)",
            "val_acc": hf["val/acc"],
            "test_acc": hf["test/acc"],
        },
        {"data": "data=fsdd", "val_acc": fsdd["val/acc"], "test_acc": fsdd["test/acc"]},
    ]
    write_csv(CSV, rows)
    report()


def report() -> None:
    import csv

    with open(CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["| data | val/acc | test/acc |", "|---|---|---|"]
    lines += [f"| {r['data']} | {float(r['val_acc']):.4f} | {float(r['test_acc']):.4f} |" for r in rows]
    table = "\n".join(lines)
    readme = HERE / "README.md"
    start, end = "<!-- fsdd table -->", "<!-- /fsdd table -->"
    head, rest = readme.read_text().split(start, 1)
    readme.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])
    print(table)


if __name__ == "__main__":
    main()
