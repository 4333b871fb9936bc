"""Layer-wise probing in one command, from one run of the features stage.

``python -m asr_transfer.layerwise --out outputs/layers [train.py overrides...]``

The backbone runs once (or not at all when the features are already stored) with every hidden layer stored as a
pooled vector per clip; then an exact L-BFGS probe (``conf/probe``, L2 chosen on val) is fitted on
each single layer, on the learned weighted sum and on the concatenation of all layers. Writes
``<out>/layers.csv`` (layer, val and test metric, the weighted sum's weight of that layer, the chosen L2),
``<out>/layers.png`` and ``<out>/.hydra/config.yaml``, so ``python report.py run_dir=<out>`` shows it.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from asr_transfer.config import compose
from asr_transfer.console import console_logging, user_errors
from asr_transfer.featurizers import Concat, SingleLayer, WeightedSum
from asr_transfer.pipeline.cli_keys import check_keys_or_exit
from asr_transfer.probe.lbfgs import Features
from asr_transfer.utils.atomic import write_csv, write_text
from asr_transfer.utils.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class SplitFeatures(Features):
    """A split's pooled features and each row's speaker (the manifest's; None where it has none)."""

    speakers: list = field(default_factory=list)


def _noting_index(loader, seen: list):
    """The loader's batches, each batch's clip indices appended to ``seen`` (a shuffled train loader's
    order is only known as it runs)."""
    for batch in loader:
        if batch is not None:
            seen.append(batch["index"])
        yield batch


def stored_features(cfg) -> tuple[dict[str, SplitFeatures], int, int, list[str]]:
    """Every split's pooled features of every layer: ({split: Features}, num_layers, hidden, labels).
    Built like a training run's parts (the same plan and store); no task is built."""
    from asr_transfer.pipeline.build import build_parts
    from asr_transfer.pipeline.plan import make_plan

    parts = build_parts(cfg, make_plan(cfg, "fit", overrides=[]))
    dm = parts.datamodule
    dm.prepare_data()
    dm.setup("fit")  # without a store, Features.from_loader below says why audio batches cannot be probed
    splits = {}
    for s in ("train", "val", "test"):
        if s in dm.datasets:
            seen: list = []
            splits[s] = SplitFeatures.from_loader(_noting_index(dm.loader(s), seen), s)
            splits[s].speakers = [dm.entries[s][i].speaker for i in torch.cat(seen).tolist()]
    return splits, parts.backbone.num_layers, parts.backbone.hidden_size, list(dm.labels)


def probe_rows(
    splits: dict[str, Features], num_layers: int, hidden: int, num_classes: int, probe, seed: int = 0
) -> list[dict]:
    """One row per featurizer: each layer, weighted_sum, concat (val/test accuracy, chosen L2)."""
    from asr_transfer.heads import LinearHead

    variants = [(str(k), SingleLayer(num_layers, hidden, layer=k)) for k in range(num_layers)]
    variants += [("weighted_sum", WeightedSum(num_layers, hidden)), ("concat", Concat(num_layers, hidden))]
    rows, weights = [], None
    for name, featurizer in variants:
        torch.manual_seed(seed)
        head = LinearHead(featurizer.output_size, num_classes)
        # the stored features hold every layer: each featurizer reads its own (featurizer.layers)
        part = {s: Features(f.x[:, featurizer.layers], f.y) for s, f in splits.items()}
        t0 = time.perf_counter()
        result = probe.fit(featurizer, head, part["train"], part.get("val"))
        row = {"layer": name, "l2": result.l2, "seconds": round(time.perf_counter() - t0, 2)}
        for s in ("val", "test"):
            if s in part:
                row[f"{s}/acc"] = round(probe.evaluate(featurizer, head, part[s])["acc"], 4)
        if name == "weighted_sum":
            weights = featurizer.weights().detach().tolist()
        rows.append(row)
    for r in rows:
        r["weight"] = round(weights[int(r["layer"])], 4) if r["layer"].isdigit() else ""
    return rows


def run(overrides: list[str], out: Path) -> list[dict]:
    # weighted_sum: the stored features hold every layer; the probe settings come from conf/probe
    cfg = compose(["featurizer=weighted_sum", *overrides, f"paths.output_dir={out}"])
    if not cfg.get("probe"):
        raise ConfigError(
            "layer-wise probing fits with the exact probe",
            "probe is off",
            "leave probe=lbfgs (conf/probe/lbfgs.yaml)",
        )
    t0 = time.perf_counter()
    splits, num_layers, hidden, labels = stored_features(cfg)
    t1 = time.perf_counter()
    rows = probe_rows(splits, num_layers, hidden, len(labels), instantiate(cfg.probe), int(cfg.seed))
    log.info("features %.1f s, %d probes %.1f s", t1 - t0, len(rows), time.perf_counter() - t1)
    add_silhouettes(rows, splits)
    write_text(
        out / ".hydra" / "config.yaml",
        yaml.safe_dump(OmegaConf.to_container(cfg, resolve=True), sort_keys=False),
    )
    write_csv(out / "layers.csv", rows)
    from asr_transfer.report.figures import layer_curve
    from asr_transfer.report.rundir import read_csv

    table = read_csv(out / "layers.csv")
    weights = [float(r["weight"]) for r in table if r["weight"] != ""]
    layer_curve(table, weights).savefig(out / "layers.png", dpi=120)
    return rows


def add_silhouettes(rows: list[dict], splits: dict[str, SplitFeatures]) -> None:
    """Each single layer's cosine silhouette of the pooled vectors (asr_transfer/interpret/embedding.py):
    ``silhouette_label`` on the test (else val) split's classes, ``silhouette_speaker`` on the first
    split with several speakers (train when val and test hold one unseen speaker each). Does the layer
    cluster by class or by speaker, next to how well a probe reads it."""
    from asr_transfer.interpret.embedding import silhouette

    f = splits.get("test") or splits.get("val")
    by_speaker = next(
        (g for g in (splits.get(s) for s in ("test", "val", "train")) if g is not None and _speakers(g) > 1),
        None,
    )
    for r in rows:
        label = speaker = None
        if r["layer"].isdigit():
            k = int(r["layer"])
            if f is not None and f.y.dim() == 1:
                label = silhouette(f.x[:, k].float().numpy(), f.y.tolist())
            if by_speaker is not None:
                speaker = silhouette(by_speaker.x[:, k].float().numpy(), by_speaker.speakers)
        r["silhouette_label"] = "" if label is None else round(label, 4)
        r["silhouette_speaker"] = "" if speaker is None else round(speaker, 4)


def _speakers(f: SplitFeatures) -> int:
    """How many speakers the split names (0 when any row has none)."""
    return 0 if None in f.speakers else len(set(f.speakers))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, default=Path("outputs/layers"), help="folder for layers.csv, layers.png, .hydra/"
    )
    p.add_argument("overrides", nargs="*", help="train.py overrides (backbone, data, probe...)")
    a = p.parse_args(argv)
    check_keys_or_exit(a.overrides)  # the key redirect train.py gives (optimiser.lr -> optimizer.lr)
    console_logging()
    with user_errors():
        rows = run(a.overrides, a.out)
    for r in rows:
        print(", ".join(f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
