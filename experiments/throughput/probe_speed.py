"""The exact probe's speed (issue 28): the code before (``--base``, default 8b1e712) against this tree, one invocation.

    python -m experiments.throughput.probe_speed                 # process runs + the 1500-clip grid fit
    python -m experiments.throughput.probe_speed --repeats 3     # warm runs and new fits repeated, min taken

1. Process runs, frozen Whisper tiny.en, ``experiment=fsdd_probe trainer.max_epochs=3`` (FSDD by speaker: train
   george + jackson, val nicolas, test yweweler): for each side a cold run (empty feature store and manifests)
   and ``--repeats`` warm runs (every clip stored). Measured: process wall and CPU seconds (``wait4``),
   ``train()``'s wall time (the run summary's), test accuracy, chosen L2. The old side runs from a
   ``git archive`` of ``--base``; warm runs of the two sides alternate, so both see the same load.
2. The L2 grid fit at 1500 training clips, in this process on one thread: train = george + jackson + nicolas,
   val = yweweler (the shared FSDD copy has four speakers, so no untouched test split is left at 1500 training
   clips: this part times the fit and compares its answers, it scores no held-out speaker). Old fit once per
   ``--old-repeats``, new fit ``--repeats`` times; wall and CPU seconds (min), the chosen L2, val accuracy per
   grid value, the largest difference in val logits and layer weights between the two fits.

Writes probe_speed_runs.csv, probe_speed_fit.csv and the tables of README.md's "Probe speed" section.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from experiments.throughput.measure import load_average, measure

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
README_START, README_END = "<!-- probe_speed tables: start -->", "<!-- probe_speed tables: end -->"


def train_command(root: Path, work: Path, side: str, name: str, whisper: Path, recordings: Path) -> list[str]:
    return [
        sys.executable, "train.py", "experiment=fsdd_probe",
        f"backbone.name_or_path={whisper}", f"data.corpus.root={recordings}",
        f"paths.shared_dir={SHARED}", f"paths.cache_dir={work}/{side}/cache",
        f"features.dir={work}/{side}/features", f"hydra.run.dir={work}/{side}/{name}",
    ]  # fmt: skip


def process_run(root: Path, work: Path, side: str, name: str, args) -> dict:
    cmd = train_command(root, work, side, name, args.whisper, args.recordings)
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    log = work / side / f"{name}.log"
    load = load_average()
    m = measure(cmd, log, root, env, args.timeout)
    text = log.read_text()
    if m.returncode != 0:
        sys.exit(f"{side} {name} failed ({m.returncode}): see {log}\n{text[-2000:]}")
    metrics = json.loads((work / side / name / "metrics.json").read_text())
    inner = re.search(r"wall time: ([0-9.]+) s", text)
    fit = re.search(r"probe=lbfgs: l2=\S+ chosen on val from .* \(([0-9.]+) s\)", text)
    return {
        "side": side, "run": name.rstrip("0123456789"), "process_wall_s": round(m.wall_s, 2),
        "process_cpu_s": round(m.cpu_s, 2), "train_wall_s": float(inner.group(1)) if inner else None,
        "fit_wall_s": float(fit.group(1)) if fit else None, "test_acc": metrics.get("test/acc"),
        "val_acc": metrics.get("val/acc"), "l2": metrics.get("probe/l2"), "load": load,
    }  # fmt: skip


def save_problem(args, work: Path) -> Path:
    """The 1500-clip problem (train george + jackson + nicolas, val yweweler) from the new side's store."""
    import torch

    from asr_transfer.config import compose
    from asr_transfer.pipeline.layerwise import stored_features

    overrides = train_command(REPO, work, "new", "fit", args.whisper, args.recordings)[2:]
    cfg = compose([o.replace("hydra.run.dir", "paths.output_dir") for o in overrides])
    splits, layers, hidden, labels = stored_features(cfg)  # stored by the new side's runs: nothing to encode
    path = work / "problem.pt"
    torch.save({"train": (torch.cat([splits["train"].x, splits["val"].x]),
                          torch.cat([splits["train"].y, splits["val"].y])),
                "val": (splits["test"].x, splits["test"].y),
                "layers": layers, "hidden": hidden, "classes": len(labels)}, path)  # fmt: skip
    return path


def fit_worker(problem: Path, repeats: int, out: Path, threads: int | None) -> None:
    """One side's grid fit, in a process whose ``asr_transfer`` is that side's tree (PYTHONPATH)."""
    import torch

    from asr_transfer.featurizers import WeightedSum
    from asr_transfer.heads import LinearHead
    from asr_transfer.probe.lbfgs import Features, LBFGSProbe

    p = torch.load(problem)
    train, val = Features(*p["train"]), Features(*p["val"])
    walls, cpus = [], []
    for _ in range(repeats):
        torch.manual_seed(0)
        featurizer, head = WeightedSum(p["layers"], p["hidden"]), LinearHead(p["hidden"], p["classes"])
        load = load_average()
        t0, c0 = time.perf_counter(), time.process_time()
        result = (LBFGSProbe(num_threads=threads) if threads else LBFGSProbe()).fit(
            featurizer, head, train, val
        )
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    with torch.no_grad():
        logits = head(featurizer(val.x.transpose(0, 1)))
    torch.save({"logits": logits, "weights": featurizer.weights().detach(), "table": result.table, "l2": result.l2,
                "walls": walls, "cpus": cpus, "load": load}, out)  # fmt: skip


def grid_fits(args, work: Path, roots: dict[str, Path]) -> list[dict]:
    import torch

    problem = save_problem(args, work)
    rows, fitted = [], {}
    sides = [("old", "old", args.old_repeats, None), ("new", "new", args.repeats, None),
             ("new, 2 threads", "new", args.repeats, 2)]  # fmt: skip
    for side, tree, repeats, threads in sides:
        out = work / f"fit-{side}.pt"
        env = {**os.environ, "PYTHONPATH": str(roots[tree])}
        cmd = [sys.executable, str(Path(__file__)), "--fit-worker", str(problem), "--repeats", str(repeats),
               "--fit-out", str(out), *(["--fit-threads", str(threads)] if threads else [])]  # fmt: skip
        subprocess.run(cmd, env=env, check=True, cwd=roots[tree])
        r = torch.load(out)
        fitted[side] = (r["logits"], r["weights"])
        for row in r["table"]:
            rows.append({"side": side, "clips": len(torch.load(problem)["train"][1]), "l2": row["l2"],
                         "chosen": row["l2"] == r["l2"], "val_acc": row["val/acc"],
                         "val_loss": round(row["val/loss"], 6), "objective": row["train/objective"],
                         "iterations": row["iterations"], "evaluations": row["evaluations"],
                         "solve_s": round(row["seconds"], 3), "grid_wall_s": round(min(r["walls"]), 3),
                         "grid_cpu_s": round(min(r["cpus"]), 3), "repeats": repeats, "load": r["load"]})  # fmt: skip
    old_logits, old_weights = fitted["old"]
    for r in rows:  # each side against the old fit
        logits, weights = fitted[r["side"]]
        r["max_val_logit_diff"] = round((old_logits - logits).abs().max().item(), 6)
        r["max_val_prob_diff"] = round((old_logits.softmax(-1) - logits.softmax(-1)).abs().max().item(), 6)
        r["max_layer_weight_diff"] = round((old_weights - weights).abs().max().item(), 8)
    return rows


def fewshot_runs(args, work: Path, roots: dict[str, Path]) -> list[dict]:
    """``python -m asr_transfer.fewshot --k 16 --draws 5`` per side on its warm store: seconds per draw."""
    rows = []
    for side in ("old", "new"):
        out = work / side / "fewshot"
        overrides = train_command(roots[side], work, side, "fewshot", args.whisper, args.recordings)[2:-1]
        cmd = [sys.executable, "-m", "asr_transfer.fewshot", "--k", "16", "--draws", "5", "--out", str(out),
               *overrides]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(roots[side]), "HF_HUB_OFFLINE": "1"}
        m = measure(cmd, work / side / "fewshot.log", roots[side], env, args.timeout)
        if m.returncode != 0:
            sys.exit(f"{side} fewshot failed ({m.returncode}): see {work / side / 'fewshot.log'}")
        draws = read_csv(out / "draws.csv")
        rows.append({"side": side, "draw_s": " ".join(f"{r['seconds']:.1f}" for r in draws),
                     "draw_cpu_s": " ".join(f"{r['cpu_seconds']:.1f}" for r in draws),
                     "test_acc": " ".join(f"{r['test/acc']:.3f}" for r in draws),
                     "process_wall_s": round(m.wall_s, 1), "load": load_average()})  # fmt: skip
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)


def table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def summary(runs: list[dict], fits: list[dict]) -> str:
    """Side-by-side tables (min over repeats) from the two CSVs' rows."""
    out = []
    if runs:
        best = []
        for side in ("old", "new"):
            cold = [r for r in runs if r["side"] == side and r["run"] == "cold"]
            warm = [r for r in runs if r["side"] == side and r["run"] == "warm"]
            if not cold or not warm:
                continue
            w = min(warm, key=lambda r: r["process_wall_s"])
            best.append({
                "side": side, "cold process s": cold[0]["process_wall_s"], "warm process s": w["process_wall_s"],
                "warm/cold (wall)": round(w["process_wall_s"] / cold[0]["process_wall_s"], 3),
                "cold CPU s": cold[0]["process_cpu_s"], "warm CPU s": min(r["process_cpu_s"] for r in warm),
                "warm/cold (CPU)": round(min(r["process_cpu_s"] for r in warm) / cold[0]["process_cpu_s"], 3),
                "warm train() s": min(r["train_wall_s"] for r in warm), "warm fit s": min(r["fit_wall_s"] for r in warm),
                "test acc": w["test_acc"], "L2": w["l2"], "warm runs": len(warm),
            })  # fmt: skip
        out.append(table(best, list(best[0])))
    if fits:
        cols = [
            "side",
            "l2",
            "chosen",
            "val_acc",
            "val_loss",
            "objective",
            "iterations",
            "evaluations",
            "solve_s",
        ]
        out.append(table(fits, cols))
        grid = {r["side"]: r for r in fits}
        out.append(table(list(grid.values()), ["side", "clips", "grid_wall_s", "grid_cpu_s", "repeats", "load",
                                               "max_val_logit_diff", "max_val_prob_diff",
                                               "max_layer_weight_diff"]))  # fmt: skip
    return "\n\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="a8b421e", help="the commit whose probe is 'old'")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-repeats", type=int, default=1, help="the old grid fit (tens of seconds) repeats")
    p.add_argument("--whisper", type=Path, default=SHARED / "models" / "whisper-tiny.en")
    p.add_argument("--recordings", type=Path, default=SHARED / "data" / "fsdd" / "recordings")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--skip-runs", action="store_true", help="only the grid fit (needs the new side's store)")
    p.add_argument("--work", type=Path, help="keep runs here (default: a temporary folder)")
    p.add_argument("--fit-worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--fit-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--fit-threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.fit_worker:
        return fit_worker(args.fit_worker, args.repeats, args.fit_out, args.fit_threads)
    with tempfile.TemporaryDirectory(prefix="probe_speed_") as tmp:
        work = args.work or Path(tmp)
        roots = old_tree(args, work)
        runs = [] if args.skip_runs else process_runs(args, work, roots)
        fewshot = [] if args.skip_runs else fewshot_runs(args, work, roots)
        fits = grid_fits(args, work, roots)
    if runs:
        write_csv(HERE / "probe_speed_runs.csv", runs)
        write_csv(HERE / "probe_speed_fewshot.csv", fewshot)
    write_csv(HERE / "probe_speed_fit.csv", fits)
    fewshot = fewshot or read_csv(HERE / "probe_speed_fewshot.csv")
    text = summary(runs or read_csv(HERE / "probe_speed_runs.csv"), fits)
    if fewshot:
        text += "\n\nFew-shot, `python -m asr_transfer.fewshot --k 16 --draws 5` on the warm store:\n\n"
        text += table(fewshot, list(fewshot[0]))
    print(text)
    update_readme(text + f"\n\n(load average after: {load_average()})")


def old_tree(args, work: Path) -> dict[str, Path]:
    """The two sides' source trees: the old one a ``git archive`` of ``--base``."""
    old = work / "old-tree"
    if not old.is_dir():
        old.mkdir(parents=True)
        archive = subprocess.check_output(["git", "archive", args.base], cwd=REPO)
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(old, filter="data")
    return {"old": old, "new": REPO}


def process_runs(args, work: Path, roots: dict[str, Path]) -> list[dict]:
    names = ["cold", *(f"warm{i}" for i in range(args.repeats))]
    runs = []
    for name in names:  # warm runs of the two sides alternate: both see the same load
        for side in ("old", "new"):
            runs.append(process_run(roots[side], work, side, name, args))
            print(runs[-1], flush=True)
            # after every run: a long invocation keeps what it measured
            write_csv(HERE / "probe_speed_runs.csv", runs)
    return runs


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v)
            except (TypeError, ValueError):
                pass
    return rows


def update_readme(text: str) -> None:
    readme = HERE / "README.md"
    body = readme.read_text()
    if README_START not in body:
        return
    head, rest = body.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    from asr_transfer.utils.atomic import write_text

    write_text(readme, f"{head}{README_START}\n{text}\n{README_END}{tail}")


if __name__ == "__main__":
    main()
