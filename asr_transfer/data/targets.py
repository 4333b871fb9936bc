"""What a task learns from each manifest row: which field it reads, what one row's target is, and how a
batch of them collates. The task names its ``Targets`` (``TransferTask.make_targets``); the datamodule,
the datasets and ``check_data.py`` only call this interface, so a new kind of target is one class here
or in the task's own module.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from asr_transfer.data.manifest import Entry, ManifestError


class Targets:
    """``field``: the manifest field every row must have ("" for none).
    ``crop_ok``: a clip cropped to ``data.max_duration`` keeps its target (a label does, a transcript
    does not: over-long clips with such targets are skipped, never cropped).
    ``skippable``: rows ``fit`` rejects are left out under ``data.on_bad_audio=skip`` like bad audio
    (logged to bad_audio.jsonl with ``fault_reason``); otherwise the first one stops the run. Such
    targets judge a missing field themselves (``required = False``), so it follows the same policy."""

    field: str = ""
    crop_ok: bool = True
    skippable: bool = False
    required: bool = True
    fault_reason: str = "unseen_label"

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        """Called once with every split's rows (after the header checks); returns every row the run
        cannot use (the datamodule raises the first, ``check_data.py`` lists them all)."""
        return []

    def skips(self, on_bad_audio: str) -> bool:
        """Whether rows ``fit`` rejects are left out (and logged) rather than stopping the run: the one
        rule the datamodule and ``check_data.py`` both apply."""
        return self.skippable and on_bad_audio == "skip"

    def notes(self) -> list[ManifestError]:
        """Rows the last ``fit`` kept but changed (e.g. a transcript cut to fit), each named; a run warns,
        ``check_data.py`` lists them as notes with ``note_reason``."""
        return []

    note_reason: str = "changed_target"

    def encode(self, entry: Entry) -> Any:
        """One row's target as the dataset item carries it (``item["target"]``)."""
        return entry.get(self.field)

    def collate(self, values: list) -> dict:
        """Batch keys for a list of ``encode`` results."""
        return {"targets": values}


class LabelTargets(Targets):
    """Class labels: the label set is ``labels`` (fixed order) or the training split's, sorted naturally;
    batches carry ``labels`` (B,) class ids."""

    field = "label"

    def __init__(self) -> None:
        self.labels: list[str] | None = None
        self.index: dict[str, int] = {}

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        if labels:
            self.labels = list(labels)
        else:
            train = entries.get("train")
            if not train:
                raise ValueError("no training split to build the label set from: set data.labels explicitly")
            self.labels = sorted({e.label for e in train}, key=natural_key)
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        return [
            ManifestError(
                e.manifest,
                e.line,
                f"label {e.label!r} in the {split} split never occurs in training "
                f"(known: {self.labels[:20]}); add training examples or drop it",
                "label",
            )
            for split, rows in entries.items()
            for e in rows
            if e.label not in self.index
        ]

    def encode(self, entry: Entry) -> int:
        return self.index[entry.label]

    def collate(self, values: list) -> dict:
        return {"labels": torch.tensor(values, dtype=torch.long)}


class TextTargets(Targets):
    """Transcripts (CTC): batches carry ``text``, the task tokenizes them."""

    field = "text"
    crop_ok = False

    def collate(self, values: list) -> dict:
        return {"text": list(values)}


def natural_key(s: str) -> list:
    """Sort key that orders "2" before "10" (digit labels, numbered speakers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
