"""Optimizer parameter groups (head vs backbone, layer-wise decay) and the backbone's own warmup.

Groups hold every parameter that trains at some point of the run (``Backbone.ever_trainable``):
one frozen by the current ``backbone.unfreeze`` stage has no gradient, so the optimizer neither
updates it nor creates its state until its stage unfreezes it. Parameters that never train are
left out, so they never hold optimizer state.
"""

from __future__ import annotations

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def param_groups(
    task: nn.Module, backbone_lr: float | None, base_lr: float | None, layer_lr_decay: float | None = None
) -> list[dict]:
    """Head + featurizer at the optimizer's lr (``base_lr``); the backbone at ``backbone_lr`` (None:
    ``base_lr``), or with ``layer_lr_decay`` one group per depth: the top transformer layer at
    ``backbone_lr``, each layer below times ``layer_lr_decay`` more, and everything else in the
    backbone (feature encoder, positions, final norms) lowest, at ``backbone_lr * decay ** num_layers``.
    Adapter parameters sit in the group of the layer they are in. Empty groups are dropped."""
    backbone = task.backbone
    body = backbone.ever_trainable()
    body_ids = {id(p) for p in backbone.parameters()}
    head = [p for p in task.parameters() if p.requires_grad and id(p) not in body_ids]
    groups = [{"params": head, "name": "head"}]
    lr = base_lr if backbone_lr is None else backbone_lr
    if layer_lr_decay is None:
        groups.append({"params": body, "name": "backbone", **({} if lr is None else {"lr": lr})})
    else:
        if lr is None:
            raise ValueError("task.layer_lr_decay needs task.backbone_lr or optimizer.lr to decay from")
        if not 0 < layer_lr_decay <= 1:
            raise ValueError(f"task.layer_lr_decay={layer_lr_decay}: use a factor in (0, 1]")
        layers = backbone.transformer_layers()
        depth = {id(p): i + 1 for i, layer in enumerate(layers) for p in layer.parameters()}
        by_depth: dict[int, list] = {}
        for p in body:
            by_depth.setdefault(depth.get(id(p), 0), []).append(p)
        for d in sorted(by_depth, reverse=True):
            name = f"backbone.layer{d}" if d else "backbone.feature_encoder"
            groups.append(
                {"params": by_depth[d], "name": name, "lr": lr * layer_lr_decay ** (len(layers) - d)}
            )
    return [g for g in groups if g["params"]]


def with_backbone_warmup(optimizer: Optimizer, scheduler: dict | None, warmup_steps: int) -> dict | None:
    """The run's scheduler with the backbone groups' rates also ramped linearly from 0 over the first
    ``warmup_steps`` optimizer steps (the head keeps its own schedule). Needs a per-step LambdaLR
    schedule (cosine, linear) or no scheduler."""
    if warmup_steps <= 0:
        return scheduler
    if scheduler is None:
        lambdas, config = [lambda s: 1.0] * len(optimizer.param_groups), {"interval": "step"}
    else:
        inner = scheduler["scheduler"]
        if not isinstance(inner, LambdaLR) or scheduler.get("interval") != "step":
            raise ValueError(
                "task.backbone_warmup_steps needs a per-step LambdaLR scheduler (scheduler=cosine or linear) "
                "or none (~scheduler)"
            )
        lambdas, config = inner.lr_lambdas, {k: v for k, v in scheduler.items() if k != "scheduler"}

    def ramp(f):
        return lambda s: f(s) * min(1.0, s / warmup_steps)

    composed = [
        ramp(f) if g.get("name", "").startswith("backbone") else f
        for f, g in zip(lambdas, optimizer.param_groups)
    ]
    return {**config, "scheduler": LambdaLR(optimizer, composed)}
