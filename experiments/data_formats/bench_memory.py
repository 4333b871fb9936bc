"""Peak RSS of ``data=hf`` preparation vs. rows of parquet with embedded audio (issue 26's bound: within 15 %
from 2k to 20k rows).

For each row count, parquet shards are generated as the hub writes audio datasets (``Audio`` column of
WAV bytes, 100-row row groups), then a fresh interpreter runs ``HFDataset(path).prepare()`` (parquet ->
Arrow cache, every clip extracted to the content-keyed cache, manifests written) and reports its peak
resident set (``ru_maxrss``: anonymous and file-backed pages alike) and that after the imports.
``--mode iter`` forces the path that iterates the memory-mapped dataset (``Dataset.iter``) instead of
reading its Arrow files, to show why the corpus reads the files.

    nice -n 10 python experiments/data_formats/bench_memory.py            # 2000 and 20000 rows
    python experiments/data_formats/bench_memory.py --report              # README table from the CSV

Resumable: a (rows, mode) already in results.csv is not measured again.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CSV = HERE / "results.csv"
FIELDS = ["rows", "mode", "clip_s", "parquet_mb", "rss_after_imports_mb", "peak_rss_mb", "seconds"]
SR, CLIP_S, ROW_GROUP = 16000, 0.5, 100

MEASURE = """
import json, resource, sys, time
from asr_transfer.data.corpora import hf_rows
from asr_transfer.data.corpora.hf import HFDataset
import datasets  # imported before the baseline reading, like the corpus would
if sys.argv[2] == "iter":
    hf_rows._rows_in = lambda files: -1  # never equal to len(ds): always Dataset.iter on the memory map
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.time()
c = HFDataset(sys.argv[1], splits={"train": "train", "val": None, "test": None}, cache_dir=sys.argv[3] + "/hf",
              audio_dir=sys.argv[3] + "/audio", manifest_dir=sys.argv[3] + "/m")
paths = c.prepare()
n = sum(1 for s in ("train", "val") for _ in open(paths[s]))
print(json.dumps({"after_imports": base, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.time() - t, "rows": n}))
"""


def make_parquet(folder: Path, rows: int) -> float:
    """``folder/train-0000k-of-0000n.parquet`` with ``rows`` distinct 0.5 s WAV clips (~16 KB each)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    from datasets import Audio, Features, Value

    features = Features({"audio": Audio(), "label": Value("string"), "speaker": Value("string")})
    schema = features.arrow_schema  # carries the HF features in the metadata, as push_to_hub writes it
    rng = np.random.default_rng(0)
    per_file = 5000
    folder.mkdir(parents=True, exist_ok=True)
    shards = (rows + per_file - 1) // per_file
    for k in range(shards):
        n = min(per_file, rows - k * per_file)
        with pq.ParquetWriter(folder / f"train-{k:05d}-of-{shards:05d}.parquet", schema) as w:
            for g in range(0, n, ROW_GROUP):
                audio, labels, speakers = [], [], []
                for i in range(k * per_file + g, k * per_file + min(g + ROW_GROUP, n)):
                    t = np.arange(int(SR * CLIP_S)) / SR
                    x = 0.3 * np.sin(2 * np.pi * (200 + i % 10 * 100) * t) + 0.01 * rng.standard_normal(
                        t.size
                    )
                    buf = io.BytesIO()
                    sf.write(buf, x.astype(np.float32), SR, format="WAV", subtype="PCM_16")
                    audio.append({"bytes": buf.getvalue(), "path": f"clip{i}.wav"})
                    labels.append(str(i % 10))
                    speakers.append(f"spk{i % 50}")
                table = pa.table({"audio": audio, "label": labels, "speaker": speakers}, schema=schema)
                w.write_table(table, row_group_size=ROW_GROUP)
    return sum(f.stat().st_size for f in folder.iterdir()) / 1e6


def measure(rows: int, mode: str, work: Path) -> dict:
    data = work / f"parquet_{rows}"
    if not data.is_dir():
        make_parquet(data, rows)
    out = work / f"run_{rows}_{mode}"
    shutil.rmtree(out, ignore_errors=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    res = subprocess.run(
        [sys.executable, "-c", MEASURE, str(data), mode, str(out)], env=env, capture_output=True, text=True
    )
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rows"] == rows, got
    shutil.rmtree(out, ignore_errors=True)  # the Arrow cache and extracted clips: disk, not memory
    return {
        "rows": rows,
        "mode": mode,
        "clip_s": CLIP_S,
        "parquet_mb": round(sum(f.stat().st_size for f in data.iterdir()) / 1e6, 1),
        "rss_after_imports_mb": round(got["after_imports"], 1),
        "peak_rss_mb": round(got["peak"], 1),
        "seconds": round(got["seconds"], 1),
    }


def load() -> list[dict]:
    if not CSV.is_file():
        return []
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def report() -> None:
    rows = load()
    peak = {(int(r["rows"]), r["mode"]): float(r["peak_rss_mb"]) for r in rows}
    lines = [
        "| rows | mode | parquet MB | RSS after imports MB | peak RSS MB | vs. smallest | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["mode"], int(r["rows"]))):
        smallest = min(v for (n, m), v in peak.items() if m == r["mode"])
        ratio = float(r["peak_rss_mb"]) / smallest
        lines.append(
            f"| {r['rows']} | {r['mode']} | {r['parquet_mb']} | {r['rss_after_imports_mb']} | "
            f"{r['peak_rss_mb']} | {ratio:.3f} | {r['seconds']} |"
        )
    table = "\n".join(lines)
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = "<!-- memory table -->", "<!-- /memory table -->"
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])
    print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--modes", nargs="+", default=["files", "iter"])
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, removed after)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        return report()
    done = {(int(r["rows"]), r["mode"]) for r in load()}
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        for rows in args.rows:
            for mode in args.modes:
                if (rows, mode) in done:
                    continue
                result = measure(rows, mode, work)
                print(result, flush=True)
                results = [*load(), result]
                from asr_transfer.utils.atomic import write_csv

                write_csv(CSV, results, FIELDS)  # after each measurement: an interrupted run resumes
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report()


if __name__ == "__main__":
    main()
