"""Run a frozen probe on stored features without loading the backbone at all.

A *card* records what the pipeline reads from a backbone (sizes, sample rate, identity and weight
fingerprint, which key the feature shards). The features store writes it under
``<features.dir>/backbones/`` the first time a frozen, pretrained backbone is loaded from a local
folder, keyed by its config and the name, size and mtime of every file in that folder. A later run
with the same key builds a ``CardBackbone`` (no weights, no model code) and loads the real one only
if some clip still has to be encoded: a warm probe, a new seed or a sweep trial over head settings
skips reading the checkpoint (seconds and gigabytes for large models). Any change in the model
folder changes the key. Hub ids are never carded: their files can change upstream, and only
loading them checks that. The task is always built with a ``CardBackbone`` when features are
stored, so nothing is swapped after construction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from torch import Tensor, nn

from asr_transfer.backbones.base import Backbone, trains_reason
from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.hashing import stable_hash

log = logging.getLogger(__name__)

# What the datamodule, task and cache read from a backbone, besides identity() and fingerprint().
ATTRS = ("num_layers", "hidden_size", "sample_rate", "downsample_rate", "normalize_waveform", "min_samples")
VERSION = 2  # 2: cards record the parameters they stand in for


def card_key(backbone_cfg: dict) -> str | None:
    """The card's key, or None when this backbone is not carded (trainable, random, or not a local folder)."""
    trains = trains_reason(
        backbone_cfg.get("freeze", "all"), backbone_cfg.get("adapter"), backbone_cfg.get("unfreeze")
    )
    if trains is not None or not backbone_cfg.get("pretrained", True):
        return None
    name = backbone_cfg.get("name_or_path")
    if not name:  # torchaudio bundles and scratch models name no folder
        return None
    folder = Path(str(name)).expanduser()
    if not folder.is_dir():
        return None
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file())
    spec = {"config": dict(backbone_cfg), "folder": str(folder.resolve()), "files": files, "version": VERSION}
    return stable_hash(spec, 20)


def card_path(features_dir: str | Path, key: str) -> Path:
    return Path(features_dir) / "backbones" / f"{key}.json"


def read_card(features_dir: str | Path, backbone_cfg: dict) -> dict | None:
    """The stored card for this backbone config, or None (not cardable, never seen, or unreadable)."""
    key = card_key(backbone_cfg)
    path = None if key is None else card_path(features_dir, key)
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # a damaged card only costs loading the backbone
        log.warning("ignoring unreadable backbone card %s (%s)", path, e)
        return None


def write_card(features_dir: str | Path, backbone_cfg: dict, card: dict) -> None:
    key = card_key(backbone_cfg)
    if key is not None and not card_path(features_dir, key).is_file():
        write_json(card_path(features_dir, key), card)


def make_card(backbone: Backbone, fingerprint: str | None = None) -> dict:
    """``fingerprint``: the weight hash if already computed (hashing a large model takes seconds)."""
    card = {k: getattr(backbone, k, None) for k in ATTRS}
    card.update(
        identity=backbone.identity(),
        fingerprint=fingerprint or backbone.fingerprint(),
        type=type(backbone).__name__,
        parameters=sum(p.numel() for p in backbone.parameters()),
    )
    return card


class CardBackbone(Backbone):
    """Stands in for a frozen backbone whose features all come from the cache: no weights, no forward."""

    def __init__(self, card: dict) -> None:
        super().__init__(freeze="all")
        self.card = dict(card)
        for k in ATTRS:
            if card.get(k) is not None:
                setattr(self, k, card[k])
        self._identity, self._fingerprint = card["identity"], card["fingerprint"]
        self.card_type = card.get("type", "?")
        # the frozen weights it stands in for: parameter counts report them (they are part of the model)
        self.absent_parameters = int(card.get("parameters", 0))

    def identity(self) -> str:
        return self._identity

    def fingerprint(self) -> str:
        return self._fingerprint

    def _forward(self, wavs: Tensor, lengths: Tensor):
        raise RuntimeError(
            f"{self.card_type} was not loaded because every clip's features are stored; something asked "
            "for raw audio anyway. Run with features.mode=off, or report this as a bug."
        )

    def feature_encoder_modules(self) -> list[nn.Module]:
        return []

    def transformer_layers(self) -> list[nn.Module]:
        return []

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        raise RuntimeError("CardBackbone has no frame geometry: features come from the stored shards")
