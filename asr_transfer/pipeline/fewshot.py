"""Few-shot protocol: the same run over repeated draws of k labelled clips per class.

``python -m asr_transfer.fewshot --k 4 16 --draws 5 --out outputs/fewshot data.corpus.test_speakers=[george]``

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
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from hydra.errors import ConfigCompositionException

from asr_transfer.config import compose
from asr_transfer.console import console_logging, user_errors
from asr_transfer.pipeline.cli_keys import check_keys_or_exit
from asr_transfer.stats import seed_summary
from asr_transfer.utils.atomic import write_csv
from asr_transfer.utils.errors import ConfigError

log = logging.getLogger(__name__)


def draw_overrides(k: int, draw: int, seed: int, run_dir: Path) -> list[str]:
    return [f"data.max_per_class={k}", f"data.subset_seed={seed + draw}", f"paths.output_dir={run_dir}"]


def compose_draw(overrides: list[str], k: int, draw: int, seed: int, run_dir: Path):
    try:
        return compose([*overrides, *draw_overrides(k, draw, seed, run_dir)])
    except ConfigCompositionException as e:
        if "max_per_class" not in str(e) and "subset_seed" not in str(e):
            raise
        data = compose(overrides).data._target_
        raise ConfigError(
            "the few-shot runner needs a corpus that draws k clips per class",
            f"data ({data}) has no max_per_class/subset_seed",
            "data=fsdd, data=folder or data=speech_commands",
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
            train(cfg, overrides)  # the plan refuses settings the exact probe would ignore
            metrics = _read_metrics(run_dir)
            rows.append({"k": k, "draw": d, "subset_seed": seed + d, **metrics,
                         "seconds": round(time.perf_counter() - t0, 2),
                         "cpu_seconds": round(time.process_time() - c0, 2), "run_dir": str(run_dir)})  # fmt: skip
            log.info("k=%d draw %d: %s", k, d, {m: round(v, 4) for m, v in metrics.items() if "acc" in m})
            write_table(out / "draws.csv", rows)
    write_table(out / "summary.csv", summarize(rows))
    return rows


def _read_metrics(run_dir: Path) -> dict[str, float]:
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


def write_table(path: Path, rows: list[dict]) -> None:
    """Rows whose keys differ (a metric only some draws log): every key once, in first-seen order."""
    write_csv(path, rows, fields=list(dict.fromkeys(f for r in rows for f in r)))


def summary_text(rows: list[dict]) -> str:
    """``summarize``'s rows for the console: a block per budget, one metric a line, mean ± std (whole
    numbers, such as parameter counts, without decimals: ``pipeline.train.number``)."""
    from asr_transfer.pipeline.train import number

    blocks = []
    for r in rows:
        n = r["draws"]
        lines = [f"k={r['k']} ({n} draw{'s' if n != 1 else ''}): mean ± std over draws"]
        for m in [c.removesuffix(" mean") for c in r if c.endswith(" mean")]:
            mean, std = r[f"{m} mean"], r[f"{m} std"]
            fmt = number if float(mean).is_integer() else "{:.4f}".format  # std in its mean's format
            lines.append(f"  {m:<24s} {fmt(mean)} ± {fmt(std)}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="example: " + __doc__.split("``")[1]
    )
    p.add_argument(
        "--k", type=int, nargs="+", required=True, help="labelled clips per class (several: nested)"
    )
    p.add_argument("--draws", type=int, default=5, help="draws of k clips per class, per budget (default 5)")
    p.add_argument("--seed", type=int, default=0, help="draw d uses data.subset_seed=seed+d")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/fewshot"),
        help="folder for <out>/k<k>/draw<d>/ (each a train.py run dir), draws.csv and summary.csv",
    )
    p.add_argument("overrides", nargs="*", help="train.py overrides, e.g. data.corpus.test_speakers=[george]")
    argv = sys.argv[1:] if argv is None else argv
    # key=value words are overrides wherever they stand: "--k 2 data.x=1" must not read data.x=1 as a k
    given = [w for w in argv if "=" in w and not w.startswith("-")]
    a = p.parse_args([w for w in argv if w not in given])
    a.overrides = [*a.overrides, *given]
    check_keys_or_exit(a.overrides)  # the key redirect train.py gives (optimiser.lr -> optimizer.lr)
    console_logging()
    with user_errors():
        rows = summarize(run(a.k, a.draws, a.out, a.overrides, a.seed))
    print(summary_text(rows))
    print(f"draws: {a.out / 'draws.csv'}, summary: {a.out / 'summary.csv'}")


if __name__ == "__main__":
    main()
