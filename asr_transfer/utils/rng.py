"""Seeded generators, and every random generator's state as checkpointable values (a resumed run
continues the same streams)."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def clip_generator(seed: int, epoch: int, index: int, name: str) -> torch.Generator:
    """A generator for one (clip, epoch, augmentation): independent streams whatever the worker or order."""
    salt = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")
    state = np.random.SeedSequence([seed, epoch, index, salt]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) generator states as tensors and plain values, so the
    checkpoint still loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of ``rng_state`` (a missing or differently sized CUDA state is left alone)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
