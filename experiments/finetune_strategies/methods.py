"""The methods the fine-tuning study compares, as train.py overrides (shared by ``run.py`` and ``cost.py``)."""

from __future__ import annotations

from pathlib import Path

from experiments.finetune_strategies.splits import TRAIN, manifest, per_class, rows_of
from experiments.fsdd import MODELS, clips_of

BACKBONES = {"tiny": MODELS / "whisper-tiny.en", "base": MODELS / "whisper-base"}
# Step budget per label budget: (max_steps, val_every, patience in val checks, staged stage starts).
# 'all' = 1000 clips = 125 steps per epoch at batch 8; '5' = 50 clips = 7 steps per epoch.
SCHEDULE = {"all": (125, 25, 2, (25, 50)), "5": (100, 20, 2, (20, 40))}
BACKBONE_LR, ADAPTER_LR, HEAD_LR = 1e-4, 1e-3, 2e-3
PROBE_COPIES = 4  # augmented copies of the training split the augmented probe is fitted on


def method_overrides(method: str, budget: str) -> list[str]:
    """Hydra overrides of one method; the adapters' rate is their layer group's (task.backbone_lr)."""
    s1, s2 = SCHEDULE[budget][3]
    return {
        "probe": ["probe=lbfgs"],
        "top2": ["backbone.freeze=top_k", "backbone.top_k=2"],
        "full": ["backbone.freeze=none"],
        "lora": ["adapter=lora", f"task.backbone_lr={ADAPTER_LR}"],
        "bottleneck": ["adapter=bottleneck", f"task.backbone_lr={ADAPTER_LR}"],
        "lld": ["backbone.freeze=none", "task.layer_lr_decay=0.8"],
        "staged": [f"backbone.unfreeze=[{{step:{s1},freeze:top_k,top_k:2}},{{step:{s2},freeze:none}}]"],
        # --tuning: other rates / rank for the methods the within-1-point check compares, chosen on val
        "full_lr3e-5": ["backbone.freeze=none", "task.backbone_lr=3e-5"],
        "lora_lr3e-4": ["adapter=lora", "task.backbone_lr=3e-4"],
        "lora_r32": [
            "adapter=lora",
            "backbone.adapter.rank=32",
            "backbone.adapter.alpha=64",
            f"task.backbone_lr={ADAPTER_LR}",
        ],
        "bottleneck_lr3e-4": ["adapter=bottleneck", "task.backbone_lr=3e-4"],
    }[method]


METHODS = ["probe", "top2", "full", "lora", "bottleneck", "lld", "staged"]
TUNING = ["full_lr3e-5", "lora_lr3e-4", "lora_r32", "bottleneck_lr3e-4"]


def run_overrides(work: Path, backbone: str, budget: str, method: str, aug: str, seed: int) -> list[str]:
    max_steps, val_every, patience, _ = SCHEDULE[budget]
    k = None if budget == "all" else int(budget)
    train_m = manifest(work / f"train_{budget}_{seed}.jsonl", rows_of(per_class(clips_of(TRAIN), k, seed)))
    common = [
        "experiment=fsdd_probe",
        f"backbone.name_or_path={BACKBONES[backbone]}",
        "data=manifest",
        f"data.train_manifest={train_m}",
        f"data.val_manifest={work / 'val.jsonl'}",
        f"data.test_manifest={work / 'test_clean.jsonl'}",
        "data.batch_size=8",
        f"optimizer.lr={HEAD_LR}",
        f"task.backbone_lr={BACKBONE_LR}",
        f"+trainer.max_steps={max_steps}",
        "trainer.max_epochs=-1",
        "trainer.check_val_every_n_epoch=null",
        f"+trainer.val_check_interval={val_every}",
        f"callbacks.early_stopping.patience={patience}",
        "callbacks.model_checkpoint.save_last=false",
        "~callbacks.last_every_n_steps",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        f"paths.cache_dir={work / 'cache'}",
        f"seed={seed}",
    ]
    if aug == "noise":
        common += ["augment=noise", f"augment.noise_dir={work / 'train_noise'}", "augment.snr_db=[-5,10]"]
        if method == "probe":  # the exact fit needs stored features: store augmented copies
            common.append(f"features.augmented_copies={PROBE_COPIES}")
    return common + method_overrides(method, budget)
