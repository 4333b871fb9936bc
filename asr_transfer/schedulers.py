"""Learning-rate schedules as Lightning scheduler configs (built from transformers' and torch's own)."""

from __future__ import annotations

import torch
from torch.optim import Optimizer


def cosine_with_warmup(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.1) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    return {
        "scheduler": get_cosine_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps),
        "interval": "step",
    }


def linear_with_warmup(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.1) -> dict:
    from transformers import get_linear_schedule_with_warmup

    return {
        "scheduler": get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps),
        "interval": "step",
    }


def step(optimizer: Optimizer, total_steps: int, step_size: int = 10, gamma: float = 0.1) -> dict:
    """The classic recipe: multiply the lr by ``gamma`` every ``step_size`` epochs."""
    return {
        "scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma),
        "interval": "epoch",
    }
