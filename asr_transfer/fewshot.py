"""Few-shot protocol: the same run over repeated draws of k labelled clips per class.

``python -m asr_transfer.fewshot --k 16 --draws 5 --out outputs/fewshot [train.py overrides...]``

Draw ``d`` trains on ``data.max_per_class=k`` clips per class drawn with ``data.subset_seed=seed + d``
(the corpus keeps the first k of a per-class shuffle seeded by it, so for one draw seed the k=5 clips
are among the k=10 clips: budgets are nested, and a draw is the same set every time). Only the
training split is subsampled; val and test stay whole. Every draw keeps its own run directory
(``<out>/k<k>/draw<d>``); ``<out>/draws.csv`` lists them all and ``<out>/summary.csv`` gives mean,
std and the 95 % t-interval of the mean per budget. Works for any corpus whose datamodule takes
``max_per_class``/``subset_seed`` and any method ``train.py`` runs (probe, fine-tuning, ...), since
each draw is an ordinary ``train.py`` run.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

import asr_transfer.config  # noqa: F401  (resolvers)
from asr_transfer.stats import seed_summary

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"


def draw_overrides(k: int, draw: int, seed: int, run_dir: Path) -> list[str]:
    return [f"data.max_per_class={k}", f"data.subset_seed={seed + draw}", f"paths.output_dir={run_dir}"]


def compose_draw(overrides: list[str], k: int, draw: int, seed: int, run_dir: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        try:
            return compose("train", overrides=[*overrides, *draw_overrides(k, draw, seed, run_dir)])
        except ConfigCompositionException as e:
            if "max_per_class" not in str(e) and "subset_seed" not in str(e):
                raise
            data = compose("train", overrides=overrides).data._target_
            raise ValueError(
                f"data ({data}) has no max_per_class/subset_seed: the few-shot runner needs a corpus that "
                "draws k clips per class (data=fsdd, folder, speech_commands)"
            ) from None


def run(ks: list[int], draws: int, out: Path, overrides: list[str], seed: int = 0) -> list[dict]:
    """Train every (k, draw); returns one row per draw (k, draw, subset_seed, metrics, wall seconds,
    cpu_seconds: this process's CPU time, all threads, which a shared machine inflates far less, run_dir)."""
    from asr_transfer.pipeline.train import train

    rows = []
    for k in ks:
        for d in range(draws):
            run_dir = out / f"k{k}" / f"draw{d}"
            cfg = compose_draw(overrides, k, d, seed, run_dir)
            t0, c0 = time.perf_counter(), time.process_time()
            train(cfg)
            metrics = _read_metrics(run_dir)
            rows.append({"k": k, "draw": d, "subset_seed": seed + d, **metrics,
                         "seconds": round(time.perf_counter() - t0, 2),
                         "cpu_seconds": round(time.process_time() - c0, 2), "run_dir": str(run_dir)})  # fmt: skip
            log.info("k=%d draw %d: %s", k, d, {m: round(v, 4) for m, v in metrics.items() if "acc" in m})
            write_csv(out / "draws.csv", rows)
    write_csv(out / "summary.csv", summarize(rows))
    return rows


def _read_metrics(run_dir: Path) -> dict[str, float]:
    import json

    return json.loads((run_dir / "metrics.json").read_text())


def summarize(rows: list[dict]) -> list[dict]:
    """Mean, sample std and the 95 % t-interval of the mean over draws of every metric, per k."""
    out = []
    for k in sorted({r["k"] for r in rows}):
        group = [r for r in rows if r["k"] == k]
        row: dict = {"k": k, "draws": len(group)}
        for m in sorted(
            {m for r in group for m in r if "/" in m} | {"seconds", "cpu_seconds"} & set(group[0])
        ):
            vals = [float(r[m]) for r in group if m in r]
            row[f"{m} mean"] = round(statistics.fmean(vals), 4)
            row[f"{m} std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
            if "/" in m and "_ci95_" not in m:
                s = seed_summary(vals)
                row[f"{m} ci95_low"], row[f"{m} ci95_high"] = round(s["ci_low"], 4), round(s["ci_high"], 4)
        out.append(row)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(f for r in rows for f in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--k", type=int, nargs="+", required=True, help="labelled clips per class (several: nested)"
    )
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="draw d uses data.subset_seed=seed+d")
    p.add_argument("--out", type=Path, default=Path("outputs/fewshot"))
    p.add_argument("overrides", nargs="*", help="train.py overrides, e.g. data.test_speakers=[george]")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for r in summarize(run(a.k, a.draws, a.out, a.overrides, a.seed)):
        print(", ".join(f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
