"""The augmentation settings chosen on a noisy validation set, and what they give on test.

    python -m experiments.augmentation.select     # README block from val_snr.csv / val_masks.csv (+ *_clips.csv)

The runs come from ``run.py`` (commands in the README): each CSV holds one family, ``none`` plus a small
grid of the same size and seeds for every family:

- ``snr`` (``val_snr.csv``): the SNR range of ``augment=noise`` over the training noise folder, the exact
  probe on 4 stored augmented copies (``--copies 4``);
- ``masks`` (``val_masks.csv``): SpecAugment time and channel masks on the cached frozen frames, the
  minibatch linear head (``--copies 0``, 4 epochs).

The setting is chosen per family by ``asr_transfer.selection.choose_on_val`` on ``val_mean`` (the mean of
val_clean, val_10dB and val_0dB: nicolas clean and with fresh training-type noise), averaged over seeds;
ties go to the setting listed first (the one the earlier runs used). Test is read only to report the
choice: its mean ± std over seeds, and its gain over ``none`` with a paired bootstrap interval over the
test clips (each clip's outcome averaged over seeds) and a permutation p-value (``asr_transfer.stats``).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import numpy as np

from asr_transfer.selection import choose_on_val
from asr_transfer.stats import Bootstrap, mean_metric
from asr_transfer.utils.atomic import replace_between
from experiments.augmentation.run import TEST_SETS, VAL_SETS

HERE = Path(__file__).resolve().parent
FAMILIES = {  # family: (csv, its grid, the incumbent first)
    "snr": ("val_snr.csv", ["noise", "noise_0to20", "noise_m10to5"]),
    "masks": ("val_masks.csv", ["specaugment", "specaug_weak", "specaug_strong"]),
}
WHAT = {
    "noise": "SNR [-5, 10] dB", "noise_0to20": "SNR [0, 20] dB", "noise_m10to5": "SNR [-10, 5] dB",
    "specaugment": "time 0.3 x 4, channels 0.2 x 32", "specaug_weak": "time 0.15 x 4, channels 0.1 x 16",
    "specaug_strong": "time 0.5 x 4, channels 0.3 x 48", "none": "no augmentation",
}  # fmt: skip
START, END = "<!-- select.py: start -->", "<!-- select.py: end -->"


def read(name: str) -> tuple[list[dict], list[dict]]:
    path = HERE / name
    if not path.is_file():
        return [], []
    clips = path.with_name(path.stem + "_clips.csv")
    return list(csv.DictReader(path.open())), list(csv.DictReader(clips.open())) if clips.is_file() else []


def cell(values: list[float]) -> str:
    m = statistics.fmean(values)
    return f"{m:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{m:.3f}"


def outcomes(clips: list[dict], cond: str, test_set: str) -> np.ndarray:
    """Per test clip, the fraction of seeds that got it right."""
    rs = [r["correct"] for r in clips if r["condition"] == cond and r["set"] == test_set]
    return np.mean([[int(c) for c in s] for s in rs], axis=0)


def family_block(family: str, rows: list[dict], clips: list[dict]) -> list[str]:
    grid = FAMILIES[family][1]
    grid_rows = [dict(r, family=family) for r in rows if r["condition"] in grid]
    seeds = {c: sorted(r["seed"] for r in rows if r["condition"] == c) for c in ["none", *grid]}
    if any(seeds[c] != seeds[grid[0]] for c in grid) or not seeds[grid[0]]:
        return [f"*{family}: the grid is not complete yet ({seeds}); nothing chosen.*"]
    # incumbent first: ties go to it
    grid_rows.sort(key=lambda r: grid.index(r["condition"]))
    chosen = choose_on_val(grid_rows, "val_mean", setting="condition", within=("family",))[(family,)]
    cols = [*VAL_SETS, "val_mean", *TEST_SETS]
    out = [
        "| setting | seeds | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for cond in ["none", *grid]:
        rs = [r for r in rows if r["condition"] == cond]
        mark = " **(chosen)**" if cond == chosen else ""
        vals = [cell([float(r[c]) for r in rs]) for c in cols]
        out.append(f"| {cond}: {WHAT[cond]}{mark} | {len(rs)} | " + " | ".join(vals) + " |")
    val = {
        c: statistics.fmean(float(r["val_mean"]) for r in rows if r["condition"] == c)
        for c in ["none", chosen]
    }
    out += ["", f"Chosen on val: **{chosen}** ({WHAT[chosen]}), val mean {val[chosen]:.3f} against "
            f"{val['none']:.3f} without augmentation"
            + (" (augmentation does not pay on val: `none` scores higher)." if val["none"] > val[chosen] else ".")]  # fmt: skip
    if clips:
        out += ["", f"Its gain over `none` on test (mean over {len(seeds[chosen])} seeds; 95 % paired bootstrap "
                "interval over the test clips, permutation p):", "",
                "| test set | none | " + chosen + " | gain [95 % CI] | p |", "|---|---|---|---|---|"]  # fmt: skip
        for s in TEST_SETS:
            p = Bootstrap().paired(
                mean_metric(outcomes(clips, chosen, s)), mean_metric(outcomes(clips, "none", s))
            )
            out.append(f"| {s} | {p['b']:.3f} | {p['a']:.3f} | {100 * p['difference']:+.1f} "
                       f"[{100 * p['ci_low']:+.1f}, {100 * p['ci_high']:+.1f}] | {p['p_value']:.3f} |")  # fmt: skip
    return out


def block() -> str:
    out = []
    for family, (name, _) in FAMILIES.items():
        rows, clips = read(name)
        out += ["", f"**{family}** (`{name}`):", ""] + (
            family_block(family, rows, clips) if rows else ["*not run*"]
        )
    return "\n".join(out[1:])


def main() -> None:
    text = block()
    if not replace_between(HERE / "README.md", START, END, text):
        raise SystemExit(f"{HERE / 'README.md'}: no {START} / {END} markers")
    print(text)


if __name__ == "__main__":
    main()
