"""LoRA and bottleneck adapters: what trains, what is saved, and that reloading / merging changes nothing."""

from __future__ import annotations

import json
import logging

import lightning as L
import pytest
import torch

from asr_transfer.backbones.adapters import Bottleneck, LoRA
from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.pipeline.build import build_backbone, task_class
from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.pipeline.restore import restore
from asr_transfer.pipeline.train import train
from tests.conftest import (
    TINY_WHISPER,
    audio_datamodule,
    compose_train,
    predict_rows,
    task_for,
    tone_overrides,
)
from tests.pipeline.test_ctc_runs import ctc_overrides, word_corpus  # noqa: F401, F811  (fixture)
from tests.presets import BACKBONES

D, FF, LAYERS = 32, 64, 2  # every tiny backbone: width 32, feed-forward 64, 2 layers
LORA_PER_LAYER = 4 * 4 * (D + D) + 4 * (D + FF) * 2  # rank 4 on q, k, v, out (D->D) and D->FF, FF->D
BOTTLENECK_PER_LAYER = 2 * ((D * 8 + 8) + (8 * D + D))  # size 8, after attention and after the FFN
FAMILIES = [
    "ta_wav2vec2_base",
    "ta_hubert_base",
    "hf_wav2vec2_group",
    "hf_hubert",
    "hf_wavlm_layer",
    "whisper",
]


def _trainable(module) -> dict[str, int]:
    return {n: p.numel() for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", FAMILIES)
def test_lora_trains_exactly_the_low_rank_updates(name):
    backbone = BACKBONES[name](adapter=LoRA(rank=4, alpha=8))
    trainable = _trainable(backbone)
    assert all("lora_" in n for n in trainable)
    assert sum(trainable.values()) == LAYERS * LORA_PER_LAYER
    assert not backbone.fully_frozen and "LoRA" in backbone.not_frozen_reason()


@pytest.mark.parametrize("name", [*FAMILIES, "ta_wavlm_base_plus"])
def test_bottleneck_counts_and_starts_as_the_pretrained_model(name):
    torch.manual_seed(0)
    plain = BACKBONES[name]().eval()
    torch.manual_seed(0)
    adapted = BACKBONES[name](adapter=Bottleneck(size=8)).eval()
    trainable = _trainable(adapted)
    assert all("bottleneck_adapter" in n for n in trainable)
    assert sum(trainable.values()) == LAYERS * BOTTLENECK_PER_LAYER
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    with torch.no_grad():
        a, b = plain(wavs, lengths)[0], adapted(wavs, lengths)[0]
    for x, y in zip(a, b):  # zero-initialised up-projections: the adapters add exactly 0
        assert torch.equal(x, y)


def test_lora_on_torchaudio_wavlm_adapts_its_multihead_attention():
    backbone = BACKBONES["ta_wavlm_base_plus"](adapter=LoRA(rank=4))
    names = _trainable(backbone)
    assert any("attention.attention.lora_A" in n for n in names)
    assert sum("feed_forward" in n for n in names) == 4 * LAYERS  # A and B of both FFN linears


def test_adapter_with_top_k_also_trains_the_top_layer():
    backbone = BACKBONES["whisper"](adapter=LoRA(rank=4), freeze="top_k", top_k=1)
    trainable = _trainable(backbone)
    assert any(n.startswith("model.layers.1.") and "lora_" not in n for n in trainable)
    assert not any(n.startswith("model.layers.0.") and "lora_" not in n for n in trainable)
    assert any(n.startswith("model.layers.0.") and "lora_" in n for n in trainable)


def test_unknown_target_names_the_key_and_the_layer():
    with pytest.raises(ValueError, match=r"target_modules=\['nope'\].*transformer layer 0"):
        BACKBONES["whisper"](adapter=LoRA(target_modules=["nope"]))


def _fit(tmp_path, corpus, adapter: str, steps: int = 3):
    cfg = compose_train(
        [*tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER, f"adapter={adapter}", "optimizer.lr=0.05",
         "task.backbone_lr=0.05", "~scheduler"],
        tmp_path / "run",
    )  # fmt: skip
    L.seed_everything(0)
    backbone = build_backbone(cfg)
    dm = audio_datamodule(cfg, backbone)
    dm.prepare_data()
    dm.setup("fit")
    task = task_for(cfg, backbone, **task_class(cfg).data_kwargs(dm))
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    return cfg, task, trainer, dm


@pytest.mark.parametrize("adapter", ["lora", "bottleneck"])
def test_only_adapters_and_head_get_gradients_and_optimizer_state(tmp_path, tone_corpus, adapter):
    _, task, trainer, _ = _fit(tmp_path, tone_corpus, adapter)
    marker = "lora_" if adapter == "lora" else "bottleneck_adapter"
    expected = {n for n, p in task.named_parameters() if not n.startswith("backbone.") or marker in n}
    with_grad = {n for n, p in task.named_parameters() if p.grad is not None}
    assert with_grad == expected
    state_ids = {id(p) for p in trainer.optimizers[0].state}
    assert state_ids == {id(p) for n, p in task.named_parameters() if n in expected}


@pytest.mark.parametrize("adapter", ["lora", "bottleneck"])
def test_checkpoint_holds_only_what_trained_and_round_trips(tmp_path, tone_corpus, adapter):
    cfg, task, trainer, dm = _fit(tmp_path, tone_corpus, adapter)
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    state = load_checkpoint(path)
    saved = {k for k in state["state_dict"] if k.startswith("backbone.")}
    marker = "lora_" if adapter == "lora" else "bottleneck_adapter"
    assert saved and all(marker in k for k in saved)
    _, _, restored = restore(state)
    batch = next(iter(dm.val_dataloader()))
    task.eval()
    with torch.no_grad():
        # Same weights through the same code: equal to the last bit.
        assert torch.equal(task.forward(batch), restored.forward(batch))


def test_merged_lora_gives_the_unmerged_logits(tmp_path, tone_corpus):
    _, task, trainer, dm = _fit(tmp_path, tone_corpus, "lora")
    task.eval()
    assert any(p.abs().sum() > 0 for n, p in task.named_parameters() if "lora_B" in n)  # not a no-op
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        unmerged = task.forward(batch)
        task.backbone.adapter.merge(task.backbone)
        merged = task.forward(batch)
    assert not any("lora_" in n for n, _ in task.named_parameters())
    # fp32: W + s*BA folded once vs x@W + s*(x@A)@B: rounding only
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)


def test_probe_with_lora_trains_without_the_features_stage_and_reports_parameters(
    tmp_path, tone_corpus, caplog
):
    cfg = compose_train(["experiment=fsdd_probe", "adapter=lora"], tmp_path / "x")
    assert cfg.backbone.adapter._target_.endswith("LoRA") and cfg.backbone.freeze == "all"
    assert make_plan(cfg, overrides=[]).store is None  # never stored, never served by a weightless card
    out = tmp_path / "run"
    cfg = compose_train(
        [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "adapter=lora", "trainer.max_epochs=1"],
        out,
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert "features stage off: backbone.adapter=LoRA trains inside the backbone" in caplog.text
    assert not (tmp_path / "cache" / "features").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    lora = LAYERS * (4 * 8 * (D + D) + 8 * (D + FF) * 2)  # conf/adapter/lora.yaml: rank 8
    head = 2 * D + (D + 1) * 3 + (LAYERS + 1)  # input layer norm, linear over 3 classes, layer weights
    assert metrics["params/trainable"] == lora + head
    assert metrics["params/trainable_pct"] == pytest.approx(100 * (lora + head) / metrics["params/total"])
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    # eval.py rebuilt the model from the (seeded random) base weights + the adapter checkpoint
    assert evaluate(ecfg)["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)

    audio = tone_corpus["test"].parent / "audio"
    probs = {}
    for merge in (False, True):
        rows = predict_rows(best, audio, tmp_path / f"{merge}.json", f"adapter.merge={merge}")
        probs[merge] = torch.tensor([[v for k, v in r.items() if k.startswith("prob_")] for r in rows])
    torch.testing.assert_close(probs[True], probs[False], rtol=0, atol=2e-6)  # rows are rounded to 1e-6


@pytest.mark.parametrize("adapter", ["lora", "bottleneck"])
def test_ctc_with_an_adapter_trains_and_eval_rebuilds_it(tmp_path, word_corpus, adapter):  # noqa: F811
    out = tmp_path / "run"
    cfg = compose_train(
        [*ctc_overrides(word_corpus, tmp_path / "cache"), f"adapter={adapter}", "trainer.max_epochs=1"], out
    )
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    saved = [k for k in load_checkpoint(best)["state_dict"] if k.startswith("backbone.")]
    assert saved and all(("lora_" if adapter == "lora" else "bottleneck_adapter") in k for k in saved)
    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    assert evaluate(ecfg)["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)
