"""Frame-level labelling: a class per frame (voice activity, event detection, diarisation, digit or gap).

Manifests carry ``"segments": [{"start": s, "end": e, "label": l}, ...]`` (seconds; may be empty);
time no segment covers is the ``background`` class. Frame targets follow the backbone's frame rate
(``downsample_rate / sample_rate`` seconds a frame, ``tasks/segments.py``). A frame head (linear,
BiLSTM) gives every frame a distribution; decoding smooths it (median filter), cuts segments and drops
ones shorter than ``min_duration``. Metrics: frame accuracy and macro F1, event-based F1 with
onset/offset tolerance, and DER (pyannote.metrics) with ``speakers: true``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.data.targets import Targets, natural_key
from asr_transfer.tasks.labelled import LabelledTask
from asr_transfer.tasks.segments import (
    decode,
    diarization_error_rate,
    event_counts,
    f1,
    frame_targets,
    smooth,
)
from asr_transfer.utils.masks import lengths_to_mask

BACKGROUND = "background"
EDGE_SLACK = 0.05  # seconds a segment may pass the clip's end (durations are rounded in manifests)


class SegmentTargets(Targets):
    """``segments``: a list of ``{start, end, label}``, non-overlapping, inside the clip. Classes:
    ``background`` then the training split's labels; batches carry ``segments`` (list of (n, 3))."""

    field, skippable, required, fault_reason = "segments", True, False, "bad_target"

    def __init__(self) -> None:
        self.labels: list[str] | None = None
        self.index: dict[str, int] = {}

    @staticmethod
    def problem(entry: Entry) -> str | None:
        segs = entry.get("segments")
        if not isinstance(segs, list):
            return f"expected a list of {{start, end, label}}, got {segs!r}"
        last_end = -math.inf
        for k, s in enumerate(sorted(segs, key=lambda s: s.get("start", 0) if isinstance(s, dict) else 0)):
            if not isinstance(s, dict) or not {"start", "end", "label"} <= set(s):
                return f"segment {k}: expected {{start, end, label}}, got {s!r}"
            try:
                start, end = float(s["start"]), float(s["end"])
            except (TypeError, ValueError):
                return f"segment {k}: start/end are not numbers: {s!r}"
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
                return f"segment {k}: needs 0 <= start < end, got {s!r}"
            if entry.duration is not None and end > entry.duration + EDGE_SLACK:
                return f"segment {k} ends at {end} s, after the clip's end ({entry.duration} s)"
            if str(s["label"]).strip() in ("", BACKGROUND):
                return f"segment {k}: label {s['label']!r} is empty or the reserved {BACKGROUND!r}"
            if start < last_end - 1e-6:
                return f"segment {k} ({start}-{end} s) overlaps the one before (ends {last_end} s): frames take one label"
            last_end = end
        return None

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        faults, good = [], {}
        for split, rows in entries.items():
            for e in rows:
                problem = self.problem(e)
                if problem:
                    faults.append(ManifestError(e.manifest, e.line, f"{problem}; fix the row", self.field))
                else:
                    good.setdefault(split, []).append(e)
        found = {str(s["label"]) for e in good.get("train", []) for s in e.get(self.field)}
        names = [str(x) for x in labels] if labels else sorted(found, key=natural_key)
        self.labels = [BACKGROUND, *[n for n in names if n != BACKGROUND]]
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        for split, rows in good.items():
            for e in rows:
                unknown = sorted({str(s["label"]) for s in e.get(self.field)} - set(self.index))
                if unknown:
                    faults.append(ManifestError(e.manifest, e.line, f"label(s) {unknown} in the {split} split "
                                                f"never occur in training (known: {self.labels[:20]})", self.field))  # fmt: skip
        return faults

    def encode(self, entry: Entry) -> torch.Tensor:
        rows = [
            (float(s["start"]), float(s["end"]), self.index[str(s["label"])]) for s in entry.get(self.field)
        ]
        return torch.tensor(rows, dtype=torch.float64).reshape(-1, 3)

    def collate(self, values: list) -> dict:
        return {"segments": list(values)}


class FramesTask(LabelledTask):
    """Cross-entropy per valid frame over ``num_classes`` (``labels[0]`` is background). ``parts``:
    ``TransferTask``'s (the head: a frame head partial taking ``input_size`` and ``vocab_size``).
    ``median_frames``: median filter length (frames, 1 = none); ``min_duration``: shortest segment kept
    (s); ``onset_tolerance`` / ``offset_tolerance``: event matching (s); ``speakers``: also DER."""

    def __init__(
        self,
        num_classes: int,
        labels: list[str] | None = None,
        median_frames: int = 5,
        min_duration: float = 0.1,
        onset_tolerance: float = 0.2,
        offset_tolerance: float = 0.2,
        speakers: bool = False,
        **parts,
    ) -> None:
        super().__init__(head_sizes={"vocab_size": num_classes}, **parts)
        self.num_classes = num_classes
        self.labels = list(labels) if labels is not None else [BACKGROUND, *map(str, range(1, num_classes))]
        self.hop = self.backbone.downsample_rate / self.backbone.sample_rate
        self.median_frames, self.min_duration = int(median_frames), float(min_duration)
        self.tolerance = (float(onset_tolerance), float(offset_tolerance))
        self.speakers = speakers
        self.frame_metrics = {
            split: torch.nn.ModuleDict(
                {
                    "frame_acc": MulticlassAccuracy(num_classes, average="micro"),
                    "frame_f1": MulticlassF1Score(num_classes, average="macro"),
                }  # fmt: skip
            )
            for split in ("val", "test")
        }
        self.val_frame_metrics, self.test_frame_metrics = (
            self.frame_metrics["val"],
            self.frame_metrics["test"],
        )
        self.events: list[tuple[list, list]] = []
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> SegmentTargets:
        return SegmentTargets()

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, T, classes), frame lengths (B,))."""
        rep, lengths = self.encode(batch)
        if lengths is None:
            lengths = torch.full((rep.shape[0],), rep.shape[1], dtype=torch.long, device=rep.device)
        return self.head(rep, lengths).float(), lengths

    def targets_for(self, batch: dict, frames: int) -> torch.Tensor:
        return torch.stack([frame_targets(s, frames, self.hop) for s in batch["segments"]]).to(self.device)

    def step(self, batch: dict):
        logits, lengths = self(batch)
        mask = lengths_to_mask(lengths, logits.shape[1])
        y = self.targets_for(batch, logits.shape[1])
        return logits, lengths, mask, y, F.cross_entropy(logits[mask], y[mask])

    def training_step(self, batch: dict, batch_idx: int):
        _, _, _, _, loss = self.step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["segments"]))
        return self.guard_loss(loss)

    def on_validation_epoch_start(self) -> None:
        self.events = []

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.events = []

    def _eval(self, batch: dict | None, split: str) -> None:
        if batch is None:
            return
        logits, lengths, mask, y, loss = self.step(batch)
        self.log(f"{split}/loss", loss, batch_size=len(lengths), sync_dist=True)
        probs = torch.softmax(logits, -1).cpu().numpy()
        for k, (i, n) in enumerate(zip(batch["index"].tolist(), lengths.tolist())):
            frames = smooth(probs[k, :n], self.median_frames)
            hyp = decode(frames, self.hop, self.labels, self.min_duration)
            ref = [(s, e, self.labels[int(c)]) for s, e, c in batch["segments"][k].tolist()]
            self.events.append((ref, hyp))
            for metric in self.frame_metrics[split].values():
                metric.update(torch.as_tensor(frames, device=self.device), y[k, :n])
            if split == "test":
                self.test_rows.append({"index": i, "reference": ref, "predicted": hyp})

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._eval(batch, "val")

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        self._eval(batch, "test")

    def _epoch_end(self, split: str) -> None:
        for name, metric in self.frame_metrics[split].items():
            self.log(f"{split}/{name}", metric.compute())
            metric.reset()
        if not self.events:
            return
        counts = np.array([event_counts(r, h, *self.tolerance) for r, h in self.events]).sum(0)
        self.log(f"{split}/event_f1", f1(*counts.tolist()))
        if self.speakers:
            self.log(f"{split}/der", diarization_error_rate(self.events))

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")
        self.write_test_rows("test_segments.jsonl")

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: its decoded segments as JSON text (``[[start, end, label], ...]``)."""
        logits, lengths = self(batch)
        probs = torch.softmax(logits, -1).cpu().numpy()
        rows = []
        for k, (i, n) in enumerate(zip(batch["index"].tolist(), lengths.tolist())):
            segs = decode(smooth(probs[k, :n], self.median_frames), self.hop, self.labels, self.min_duration)
            rows.append({"index": i, "segments": [list(s) for s in segs]})
        return rows
