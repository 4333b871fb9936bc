"""Compare runs: two runs on the same test clips, or one setting's runs over seeds.

``python -m asr_transfer.compare RUN_A RUN_B [--margin 0.01] [--out compare.json]``
  every test metric of A minus B on the same clips: the difference, its 95 % paired bootstrap interval
  and a paired permutation p-value (``asr_transfer.stats.Bootstrap.paired``); with ``--margin``, also
  whether the 90 % interval lies inside +-margin (the interval form of two one-sided tests at 5 %:
  "within 1 point" is ``--margin 0.01``). Refuses runs tested on different clips.
``python -m asr_transfer.compare --seeds RUN [RUN ...] [--out seeds.json]``
  every metric of ``metrics.json`` over the runs: mean, std and the t-interval of the mean.

Runs are run directories (``metrics.json``, ``.hydra/config.yaml`` and the task's per-clip test rows:
``test_predictions.jsonl``, ``test_transcripts.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hydra.utils import get_class
from omegaconf import OmegaConf

from asr_transfer.stats import Bootstrap, seed_summary
from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.jsonl import read_jsonl


def task_of(run: Path, task: str | None = None):
    """The task class that made ``run`` (its config's ``task._target_``, or ``task`` given)."""
    if task is None:
        cfg_file = run / ".hydra" / "config.yaml"
        target = OmegaConf.select(OmegaConf.load(cfg_file), "task._target_") if cfg_file.is_file() else None
        if not target:
            raise ValueError(
                f"{run}: no task._target_ in .hydra/config.yaml (an eval.py run?): pass --task, e.g. "
                "--task asr_transfer.tasks.classification.ClassificationTask"
            )
        task = target
    return get_class(task)


def clip_rows(run: Path, task_cls) -> dict[str, dict]:
    """The run's per-clip test rows keyed by clip (audio path, else dataset index)."""
    path = run / (task_cls.test_rows_file or "")
    if not task_cls.test_rows_file or not path.is_file():
        raise ValueError(
            f"{path}: no per-clip test rows (the run was not tested, or test=false): rerun with test=true"
        )
    return {str(r.get("audio_filepath", r["index"])): r for r in read_jsonl(path)}


def compare_runs(
    a: Path, b: Path, boot: Bootstrap, margin: float | None = None, task: str | None = None
) -> dict:
    """Every clip metric of the task, A minus B on the same clips (see the module docstring)."""
    task_cls = task_of(a, task)
    if task is None and task_of(b) is not task_cls:
        raise ValueError(f"{a} and {b} are runs of different tasks: compare runs of one task")
    rows_a, rows_b = clip_rows(a, task_cls), clip_rows(b, task_cls)
    if rows_a.keys() != rows_b.keys():
        only = sorted(rows_a.keys() ^ rows_b.keys())
        raise ValueError(
            f"{a} and {b} were tested on different clips ({len(rows_a)} vs {len(rows_b)}, {len(only)} in one "
            f"only, e.g. {only[0]}): compare runs tested on the same test split"
        )
    keys = sorted(rows_a)
    ma = task_cls.clip_metrics([rows_a[k] for k in keys])
    mb = task_cls.clip_metrics([rows_b[k] for k in keys])
    out = {"a": str(a), "b": str(b), "n_clips": len(keys), "resamples": boot.resamples, "seed": boot.seed,
           "test": "paired bootstrap interval; two-sided paired permutation test (scipy.stats)",
           "metrics": {}}  # fmt: skip
    for name in ma:
        out["metrics"][f"test/{name}"] = boot.paired(ma[name], mb[name], margin=margin)
    return out


def seeds_table(runs: list[Path]) -> dict:
    """Every numeric metric of the runs' ``metrics.json``: n, mean, std, 95 % t-interval."""
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    names = sorted(
        {k for m in metrics for k, v in m.items() if isinstance(v, int | float) and "_ci95_" not in k}
    )
    return {"runs": [str(r) for r in runs],
            "metrics": {k: seed_summary([m[k] for m in metrics if k in m]) for k in names}}  # fmt: skip


def _print_pair(out: dict) -> None:
    print(f"A={out['a']}\nB={out['b']}\n{out['n_clips']} test clips")
    for name, r in out["metrics"].items():
        line = (f"{name}: A {r['a']:.4f}  B {r['b']:.4f}  A-B {r['difference']:+.4f} "
                f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] p={r['p_value']:.4g}")  # fmt: skip
        if "equivalence" in r:
            e = r["equivalence"]
            verdict = "equivalent" if e["equivalent"] else "not shown equivalent"
            line += (
                f"  within +-{e['margin']:g}: {verdict} (90 % [{e['ci90_low']:+.4f}, {e['ci90_high']:+.4f}])"
            )
        print(line)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m asr_transfer.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="RUN_A RUN_B, or with --seeds any number of runs")
    p.add_argument(
        "--seeds", action="store_true", help="aggregate the runs over seeds instead of pairing two"
    )
    p.add_argument("--margin", type=float, default=None, help="equivalence margin (0.01: within one point)")
    p.add_argument("--resamples", type=int, default=9999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default=None, help="task class, for runs whose config names none (eval.py runs)")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default compare.json / seeds.json)")
    a = p.parse_args(argv)
    missing = [str(r) for r in a.runs if not r.is_dir()]
    try:
        if missing:
            raise ValueError(f"not a run directory: {', '.join(missing)}")
        if a.seeds:
            out, path = seeds_table(a.runs), a.out or Path("seeds.json")
            for name, s in out["metrics"].items():
                print(
                    f"{name}: mean {s['mean']:.4f} std {s['std']:.4f} n={s['n']} 95 % [{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
                )
        else:
            if len(a.runs) != 2:
                raise ValueError(
                    f"compare takes two runs (RUN_A RUN_B), got {len(a.runs)}: use --seeds for more"
                )
            boot = Bootstrap(resamples=a.resamples, seed=a.seed)
            out, path = compare_runs(*a.runs, boot, a.margin, a.task), a.out or Path("compare.json")
            _print_pair(out)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {write_json(path, out)}")


if __name__ == "__main__":
    main()
