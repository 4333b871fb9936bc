"""Interpretability on FSDD's unseen speaker (issue 30): are the attributions faithful and on the speech,
where did fine-tuning change the encoder, and how do the layers cluster.

Models (Whisper tiny.en, attentive-pooling head, train george+jackson at 40 clips per digit
= 400 clips, val nicolas, test yweweler 500 clips): ``probe`` (frozen, stored frames, 8 epochs) and
three short fine-tuning runs, ``top2`` (top two layers), ``lora`` (rank 8) and ``full``
(``FT_STEPS`` steps at batch 16, backbone lr 1e-4 / LoRA 1e-3).

Steps, in this order, each resumable (a step whose rows are in its CSV is skipped; delete them to rerun):

- ``faithfulness.csv``: the deletion test (``explain.py faithfulness=true``) per model x method x
  deletion (mask; zero too on the probe) at shares 0-0.5;
- ``padding.csv``: every test clip with 0.5 s of silence before and after: the share of each clip's
  positive attribution mass on the original speech frames, per model x method;
- ``drift.csv``: per hidden state, linear CKA and relative weight change (``python -m asr_transfer.drift``)
  of top2, lora and full against the pretrained encoder on 64 val clips;
- ``layers.csv``: ``python -m asr_transfer.layerwise`` (the exact probe per layer) with its silhouettes
  by digit (test) and by speaker (train's two speakers);
- ``maps.csv``, ``map_layer<k>.png``: seeded t-SNE maps of the training clips at layers 0 and 4, by digit
  and by speaker, with their silhouettes.

    python -m experiments.interpretability.run            # every step not yet in a CSV (via /work/bin/heavy)
    python -m experiments.interpretability.run --table    # README tables and plots from the CSVs
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import torch

from asr_transfer.utils.atomic import write_csv
from experiments.fsdd import MODELS, compose_cfg

HERE = Path(__file__).resolve().parent
METHODS = ["integrated_gradients", "input_x_gradient", "saliency"]
SHARES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
FT_STEPS = 150
PAD_S = 0.5
STEPS = [
    "faithfulness:probe",
    "padding:probe",
    "drift",
    "faithfulness:lora",
    "padding:lora",
    "layers",
    "maps",
]
FINETUNE = {
    "top2": ["backbone.freeze=top_k", "backbone.top_k=2", "task.backbone_lr=1e-4"],
    "lora": ["adapter=lora", "task.backbone_lr=1e-3"],
    "full": ["backbone.freeze=none", "task.backbone_lr=1e-4"],
}


def common(work: Path) -> list[str]:
    return [
        "experiment=fsdd_probe",
        f"backbone.name_or_path={MODELS / 'whisper-tiny.en'}",
        "head=attentive",
        "probe=none",
        "data.max_per_class=40",
        f"paths.cache_dir={work / 'cache'}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "seed=0",
    ]


def train_model(work: Path, name: str) -> Path:
    """The model's best checkpoint, trained unless it is already there."""
    from asr_transfer.pipeline.train import train

    run = work / "runs" / name
    found = sorted((run / "checkpoints").glob("best-*.ckpt"))
    if found:
        return found[0]
    extra = (
        ["trainer.max_epochs=8"]
        if name == "probe"
        else [*FINETUNE[name], f"+trainer.max_steps={FT_STEPS}", "trainer.max_epochs=-1"]
    )
    train(compose_cfg("train", [*common(work), *extra, f"paths.output_dir={run}"]))
    return sorted((run / "checkpoints").glob("best-*.ckpt"))[0]


def faithfulness(work: Path, models: dict[str, Path]) -> list[dict]:
    from asr_transfer.pipeline.explain import explain

    rows = []
    for name, ckpt in models.items():
        for method in METHODS:
            # zero deletion: the comparison that shows why mask is the default, on the probe
            for deletion in ("mask", "zero") if name == "probe" else ("mask",):
                out = work / "explain" / f"{name}-{method}-{deletion}"
                cfg = compose_cfg(
                    "explain",
                    [f"ckpt_path={ckpt}", "faithfulness=true", f"method={method}", f"deletion={deletion}"]
                    + ["worst=2", "random=2", f"shares={SHARES}", f"paths.output_dir={out}"],
                )
                r = explain(cfg)["faithfulness"]
                for share, a, b in zip(r["shares"], r["attribution"], r["random"]):
                    row = {"model": name, "method": method, "deletion": deletion, "share": share}
                    rows.append({**row, "attribution": a, "random": b})
                print(name, method, deletion, r["attribution"], r["random"], flush=True)
    return rows


def padding(work: Path, models: dict[str, Path]) -> list[dict]:
    """Positive attribution share on the speech of each test clip padded with ``PAD_S`` of silence."""
    from asr_transfer.checkpoint_io import load_checkpoint
    from asr_transfer.interpret.attribute import FrameModel, frame_attributions, positive_share
    from asr_transfer.pipeline.build import build_parts, task_class
    from asr_transfer.pipeline.explain_extra import audio_model
    from asr_transfer.pipeline.plan import make_plan
    from asr_transfer.pipeline.restore import restore_config, restore_task

    rows = []
    for name, ckpt in models.items():
        state = load_checkpoint(ckpt)
        cfg = restore_config(state)
        cfg.features.mode = "off"  # audio batches: the silence is added to the audio
        parts = build_parts(cfg, make_plan(cfg, "test"), **task_class(cfg).checkpoint_data_kwargs(state))
        dm = parts.datamodule
        dm.prepare_data()
        dm.setup("test")
        task = restore_task(cfg, parts, state)
        backbone = audio_model(task, cfg).backbone.eval()
        model = FrameModel(task.featurizer, task.head).eval()
        pad = int(PAD_S * backbone.sample_rate)
        shares: dict[str, list] = {m: [] for m in METHODS}
        correct = []
        for batch in dm.loader("test"):
            wavs, lengths = batch["wavs"], batch["lengths"]
            padded = torch.zeros(len(wavs), wavs.shape[1] + 2 * pad)
            for i, n in enumerate(lengths.tolist()):
                padded[i, pad : pad + n] = wavs[i, :n]
            with torch.no_grad():
                hidden, frame_lengths = backbone(padded, lengths + 2 * pad)
            frames = task.featurizer.select(hidden).transpose(0, 1)  # (batch, layers, time, dim)
            # speech frames: those whose samples start inside the clip (frame k covers samples k*hop...)
            hop = backbone.downsample_rate
            starts = torch.arange(frames.shape[2])[None, :] * hop
            speech = (starts >= pad) & (starts < (pad + lengths)[:, None])
            with torch.no_grad():
                correct += (model(frames, frame_lengths).argmax(-1) == batch["labels"]).tolist()
            for m in METHODS:
                attr = frame_attributions(model, frames, frame_lengths, method=m)
                shares[m] += positive_share(attr, speech).tolist()
        for m in METHODS:
            s = torch.tensor(shares[m])
            row = {
                "model": name,
                "method": m,
                "clips": len(s),
                "acc_padded": round(sum(correct) / len(correct), 4),
            }
            row.update(
                {
                    "mean_share": round(float(s.mean()), 4),
                    "median_share": round(float(s.median()), 4),
                    "p10_share": round(float(s.quantile(0.1)), 4),
                    "clips_at_90pct": round(float((s >= 0.9).float().mean()), 4),
                }
            )
            rows.append(row)
            print(row, flush=True)
    return rows


def drift(work: Path, models: dict[str, Path]) -> list[dict]:
    from asr_transfer.pipeline.drift import drift as layer_drift

    rows = []
    for name in FINETUNE:
        for r in layer_drift(str(models[name]), work / "drift" / name, max_clips=64):
            rows.append({"model": name, **r})
    return rows


def layers(work: Path) -> list[dict]:
    """The layer-wise probe with its silhouettes (``python -m asr_transfer.layerwise``)."""
    from asr_transfer.pipeline.layerwise import run

    return run(layer_overrides(work), work / "layers")


def layer_overrides(work: Path) -> list[str]:
    return [
        f"backbone.name_or_path={MODELS / 'whisper-tiny.en'}",
        "data.max_per_class=40",
        f"paths.cache_dir={work / 'cache'}",
        "experiment=fsdd_probe",
    ]


def maps(work: Path) -> list[dict]:
    """Seeded t-SNE maps of the training clips' pooled vectors at layers 0 and 4, by digit and by speaker
    (the store the layers step filled: nothing is encoded)."""
    from asr_transfer.interpret.embedding import write_map
    from asr_transfer.pipeline.layerwise import stored_features

    cfg = compose_cfg(
        "train", ["featurizer=weighted_sum", *layer_overrides(work), f"paths.output_dir={work / 'maps'}"]
    )
    splits, *_ = stored_features(cfg)
    train = splits["train"]
    rows = []
    for k in (0, train.x.shape[1] - 1):
        x = train.x[:, k].float().numpy()
        groups = {"digit": train.y.tolist(), "speaker": train.speakers}
        scores = write_map(HERE / f"map_layer{k}.png", x, groups, f"layer {k}")
        rows.append({"model": "probe", "layer": k, **{n: round(v, 4) for n, v in scores.items()}})
    return rows


def read(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path))) if path.is_file() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/interp_study2"))
    ap.add_argument("--steps", nargs="+", default=STEPS, help="in this order (the most important first)")
    ap.add_argument("--table", action="store_true", help="README tables and plots from the CSVs")
    a = ap.parse_args()
    if a.table:
        from experiments.interpretability.tables import write_tables

        print(write_tables(HERE))
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    a.work.mkdir(parents=True, exist_ok=True)
    for step in a.steps:
        name, _, model = step.partition(":")
        out = HERE / f"{name}.csv"
        rows = read(out)
        if rows and (not model or any(r["model"] == model for r in rows)):
            continue  # done: delete the CSV (or its rows of that model) to rerun
        if name in ("layers", "maps"):
            new = {"layers": layers, "maps": maps}[name](a.work)
        elif name == "drift":
            new = drift(a.work, {n: train_model(a.work, n) for n in FINETUNE})
        else:
            new = {"faithfulness": faithfulness, "padding": padding}[name](
                a.work, {model: train_model(a.work, model)}
            )
        write_csv(out, rows + new)
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
