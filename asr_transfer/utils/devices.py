"""Which device this process computes on, read from the Trainer config before the Trainer exists."""

from __future__ import annotations

import os

import torch
from omegaconf import OmegaConf


def cache_device(trainer_cfg) -> torch.device:
    """The device a cache miss is computed on: this process's GPU when the Trainer will use one.

    The cache is built before ``Trainer.fit`` moves the model, so without this a GPU run would
    encode its whole corpus on the CPU. ``LOCAL_RANK`` is set by torchrun/SLURM/Lightning's
    launcher; a ``devices`` list (``[2, 3]``) names the GPUs by index.
    """
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator not in ("auto", "gpu", "cuda") or not torch.cuda.is_available():
        return torch.device("cpu")
    rank = int(os.environ.get("LOCAL_RANK", 0))
    devices = trainer_cfg.get("devices", "auto")
    if isinstance(devices, str) and "," in devices:
        devices = [int(d) for d in devices.split(",") if d.strip()]
    if OmegaConf.is_list(devices) or isinstance(devices, list | tuple):
        return torch.device("cuda", int(list(devices)[rank % len(devices)]))
    return torch.device("cuda", rank)
