"""Resolve ``backbone.name_or_path``: a local directory or a hub id, with errors that say what to do."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def resolve_pretrained(name_or_path: str, key: str = "backbone.name_or_path") -> str:
    """Return a local directory as an absolute path, or a hub id unchanged.

    A local path that does not exist fails here, before anything touches the network.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise FileNotFoundError(f"{key}={name_or_path!r} is a file; give the model directory instead")
        return str(p.resolve())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(
            f"{key}={name_or_path!r}: no such local model directory. Give an existing folder "
            "(a Hugging Face model saved with save_pretrained) or a hub id such as 'openai/whisper-tiny.en'."
        )
    return name_or_path


def load_pretrained(loader: Callable[[str], T], name_or_path: str, key: str = "backbone.name_or_path") -> T:
    """Call ``loader(path_or_id)`` and turn hub/network failures into an actionable message."""
    path = resolve_pretrained(name_or_path, key)
    try:
        return loader(path)
    except OSError as e:  # transformers raises OSError for missing repos and offline failures
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        raise OSError(
            f"{key}={name_or_path!r} could not be loaded ({e.__class__.__name__}: {str(e).splitlines()[0]}). "
            + (
                "HF_HUB_OFFLINE is set: "
                if offline
                else "Check the hub id, or that this machine reaches the hub; "
            )
            + "for offline use download the model once elsewhere (huggingface-cli download ID --local-dir DIR) "
            f"and set {key}=DIR."
        ) from e


def safetensors_files(path: str) -> list[str]:
    """The checkpoint's safetensors files, local or from the hub cache (downloaded once); [] if none."""
    from transformers.utils import cached_file

    def find(name: str) -> str | None:
        return cached_file(path, name, _raise_exceptions_for_missing_entries=False)

    single = find("model.safetensors")
    if single:
        return [single]
    index = find("model.safetensors.index.json")
    if not index:
        return []
    import json

    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    return [find(s) for s in shards]
