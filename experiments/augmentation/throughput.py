"""Cost per training step of waveform augmentation beside the unaugmented step.

For each of none, speed, noise, reverb and ``num_workers`` 0 and 2, on FSDD clips at 16 kHz
(batch 16): the data-loading time per batch (decode, resample, augment, pad) and the whole
training step (loading + frozen Whisper tiny.en forward + linear head forward/backward/step).
With workers, loading overlaps the step. Also the CPU time per clip of decode + augment in one
process (``time.process_time``: what the augmentation itself costs, whatever else the machine runs).
Prints a markdown table (and writes throughput.csv); ``--cpu-only`` prints only the CPU column.

    python -m experiments.augmentation.throughput [--batches 12] [--work /tmp/aug_study]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from asr_transfer.data.augmented import AugmentedDataset
from asr_transfer.data.noise import write_rirs
from asr_transfer.pipeline.build import build_run
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.utils.atomic import write_csv
from experiments.augmentation.run import TRAIN, compose_cfg, manifest, per_class
from experiments.fsdd import clips_of

HERE = Path(__file__).resolve().parent

AUGMENTS = {
    "none": [],
    "speed": ["augment=speed"],
    "noise": ["augment=noise"],
    "reverb": ["augment=reverb", "augment.waveform.reverb.p=1.0"],
}


def timed(loader, task, optimizer, batches: int, step: bool) -> float:
    """Mean seconds per batch over ``batches`` batches after one warm-up batch (epochs repeat as needed)."""
    it = (batch for _ in iter(int, 1) for batch in loader)
    total = 0.0
    for k in range(batches + 1):
        t = time.perf_counter()
        batch = next(it)
        if step:
            optimizer.zero_grad()
            loss = task.training_step(batch, k)
            loss.backward()
            optimizer.step()
        if k:
            total += time.perf_counter() - t
    return total / batches


def cpu_per_clip(dataset, clips: int) -> float:
    """CPU milliseconds per clip to decode, resample and augment in this process (robust to machine load)."""
    t = time.process_time()
    for i in range(clips):
        dataset[(0, i)] if isinstance(dataset, AugmentedDataset) else dataset[i]
    return 1000 * (time.process_time() - t) / clips


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument(
        "--cpu-only", action="store_true", help="only the CPU cost per clip (no backbone, no loaders)"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/aug_study"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    rirs = a.work / "rirs"
    if not rirs.is_dir():
        write_rirs(rirs, 16000)
    m = manifest(a.work / "bench.jsonl", per_class(clips_of(TRAIN), 40))
    rows = []
    for name, aug in AUGMENTS.items():
        for workers in (0, 2):
            cfg = compose_cfg(
                "train",
                [
                    "experiment=fsdd_probe",
                    "data=manifest",
                    f"data.train_manifest={m}",
                    f"data.num_workers={workers}",
                    f"paths.cache_dir={a.work / 'cache'}",
                    f"paths.output_dir={a.work / 'bench_run'}",
                    "features.mode=off",  # audio through the backbone every step: what is timed
                    "probe=none",
                    *aug,
                    *([f"augment.noise_dir={a.work / 'train_noise'}"] if name == "noise" else []),
                    *([f"augment.rir_dir={rirs}"] if name == "reverb" else []),
                ],
            )
            parts, task = build_run(cfg, make_plan(cfg, overrides=[]))
            dm = parts.datamodule
            ds = dm.train_dataloader().dataset
            cpu = cpu_per_clip(ds, 64)
            if a.cpu_only:
                rows.append({"augment": name, "cpu_ms_per_clip": round(cpu, 2)})
                print(rows[-1], flush=True)
                break
            task.train()
            opt = torch.optim.AdamW(task.param_groups(), lr=1e-3)
            load = timed(dm.train_dataloader(), task, opt, a.batches, step=False)
            step = timed(dm.train_dataloader(), task, opt, a.batches, step=True)
            rows.append(
                {"augment": name, "num_workers": workers, "load_ms": 1000 * load, "step_ms": 1000 * step}
            )
            print(rows[-1], flush=True)
    if a.cpu_only:
        base = rows[0]["cpu_ms_per_clip"]
        print("\n| augment | CPU ms/clip (decode+augment) | vs none |\n|---|---|---|")
        for r in rows:
            print(f"| {r['augment']} | {r['cpu_ms_per_clip']:.2f} | {r['cpu_ms_per_clip'] / base:.2f}x |")
        return
    base = {r["num_workers"]: r for r in rows if r["augment"] == "none"}
    print("\n| augment | num_workers | load ms/batch | step ms/batch | step vs none |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = r["step_ms"] / base[r["num_workers"]]["step_ms"]
        print(
            f"| {r['augment']} | {r['num_workers']} | {r['load_ms']:.0f} | {r['step_ms']:.0f} | {ratio:.2f}x |"
        )
    write_csv(
        HERE / "throughput.csv",
        [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    )


if __name__ == "__main__":
    main()
