"""Zero-training speaker verification, layer by layer, in one command.

``python -m asr_transfer.verification_layers --out outputs/vlayers [train.py overrides...]``
(e.g. ``experiment=fsdd_speaker_verification``).

Nothing is trained: each clip's embedding is the mean over frames of one frozen layer (the features
stage's pooled store, shared with the probes), scored as the task's trials by cosine, once raw and once
after subtracting the training split's mean vector (centring: a statistic, not a fit). The best layer
is chosen on val EER; the test columns of the other layers are for the curve only. Writes
``<out>/layers.csv`` and ``<out>/best.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from asr_transfer.config import compose
from asr_transfer.probe.lbfgs import Features
from asr_transfer.tasks.trials import all_pairs, cosine_scores, read_trials, verification_metrics
from asr_transfer.utils.atomic import write_csv, write_json
from asr_transfer.utils.errors import ConfigError

log = logging.getLogger(__name__)


def pooled_layers(cfg) -> tuple[dict[str, Features], dict[str, list]]:
    """Every split's pooled features of every stored layer ((clips, layers, dim), y = dataset index) and
    its manifest entries."""
    from asr_transfer.pipeline.build import build_parts
    from asr_transfer.pipeline.plan import make_plan

    plan = make_plan(cfg, "fit", overrides=[])
    if plan.store is None:
        raise ConfigError(
            "zero-training verification reads stored features",
            f"the features store is off ({plan.not_stored or 'features.mode=off'})",
            "use a frozen backbone and features.mode=auto",
        )
    dm = build_parts(cfg, plan).datamodule
    dm.prepare_data()
    dm.setup("fit")
    splits = {
        s: Features.from_loader(dm.loader(s), s, "index")
        for s in ("train", "val", "test")
        if s in dm.datasets
    }
    entries = {s: dm.datasets[s].entries for s in splits}
    return splits, entries


def layer_rows(
    splits: dict[str, Features], entries: dict[str, list], trials: dict | None = None
) -> list[dict]:
    """One row per (layer, centring): val and test EER / minDCF."""
    pairs = {}
    for split in ("val", "test"):
        path = (trials or {}).get(split)
        pairs[split] = read_trials(path, entries[split])[:3] if path else all_pairs(entries[split])
    rows = []
    num_layers = splits["train"].x.shape[1]
    for layer in range(num_layers):
        centre = splits["train"].x[:, layer].double().mean(0)
        for centred in (False, True):
            row = {"layer": layer, "centred": centred}
            for split in ("val", "test"):
                f = splits[split]
                emb = torch.zeros(int(f.y.max()) + 1, f.x.shape[2], dtype=torch.float64)
                emb[f.y] = f.x[:, layer].double()  # dataset order
                if centred:
                    emb = emb - centre
                enroll, test, target = pairs[split]
                metrics = verification_metrics(cosine_scores(emb, enroll, test), target)
                row.update({f"{split}/{k}": v for k, v in metrics.items()})
            rows.append(row)
    return rows


def best_row(rows: list[dict]) -> dict:
    """The lowest val EER (ties: lower val minDCF at 0.01)."""
    return min(rows, key=lambda r: (r["val/eer"], r["val/min_dcf_0.01"]))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (layers.csv, best.json)")
    parser.add_argument(
        "overrides", nargs="*", help="train.py overrides, e.g. experiment=fsdd_speaker_verification"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # a pooling head: the features store keeps pooled vectors of the layers the featurizer reads
    base = ["task=verification", "head=mean_embedding", "featurizer=weighted_sum"]
    cfg = compose([*base, f"paths.output_dir={out}", *args.overrides])
    splits, entries = pooled_layers(cfg)
    rows = layer_rows(splits, entries, cfg.task.get("trials"))
    write_csv(out / "layers.csv", rows)
    best = best_row(rows)
    write_json(out / "best.json", best)
    log.info("best layer on val: %s\n%s", json.dumps(best), "\n".join(map(str, rows)))
    return out


if __name__ == "__main__":
    main()
