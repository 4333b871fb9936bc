"""Frame-level labelling: a class per frame (voice activity, event detection, diarisation, digit or gap).

Manifests carry ``"segments": [{"start": s, "end": e, "label": l}, ...]`` (seconds; may be empty);
time no segment covers is the ``background`` class. Frame targets follow the backbone's frame rate
(``downsample_rate / sample_rate`` seconds a frame, ``tasks/segments.py``). A frame head (linear,
BiLSTM) gives every frame a distribution; decoding smooths it (median filter), cuts segments and drops
ones shorter than ``min_duration``; both settings can be chosen on val (``choose_on_val``). Metrics: frame accuracy and macro F1, event-based F1 with
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
from asr_transfer.stats import ClipMetric, ratio_metric
from asr_transfer.tasks.labelled import LabelledTask
from asr_transfer.tasks.segments import (
    decode,
    diarization_error_rate,
    event_counts,
    f1,
    frame_counts,
    frame_targets,
    macro_f1_of_counts,
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
    (s); ``choose_on_val``: ``{median_frames: [...], min_duration: [...]}``, a grid from which each
    val epoch picks the decoding with the best val event F1 (null: the two fixed values);
    ``onset_tolerance`` / ``offset_tolerance``: event matching (s); ``speakers``: also DER."""

    test_rows_file = "test_segments.jsonl"

    def __init__(
        self,
        num_classes: int,
        labels: list[str] | None = None,
        median_frames: int = 5,
        min_duration: float = 0.1,
        choose_on_val: dict | None = None,
        onset_tolerance: float = 0.2,
        offset_tolerance: float = 0.2,
        speakers: bool = False,
        **parts,
    ) -> None:
        super().__init__(head_sizes={"vocab_size": num_classes}, **parts)
        self.num_classes = num_classes
        self.labels = list(labels) if labels is not None else [BACKGROUND, *map(str, range(1, num_classes))]
        self.hop = self.backbone.downsample_rate / self.backbone.sample_rate
        # a buffer: saved with the weights, so the best epoch's checkpoint decodes as that epoch's val chose
        self.register_buffer(
            "decoding", torch.tensor([float(median_frames), float(min_duration)], dtype=torch.float64)
        )
        grid = choose_on_val or {}
        self.grid = [
            (int(m), float(d)) for m in grid.get("median_frames", []) for d in grid.get("min_duration", [])
        ]
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
        self.clips: list[tuple[int, np.ndarray, np.ndarray, list]] = []  # (index, probs, frame targets, ref)
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> SegmentTargets:
        return SegmentTargets()

    @property
    def median_frames(self) -> int:
        return int(round(float(self.decoding[0])))

    @property
    def min_duration(self) -> float:
        return round(float(self.decoding[1]), 6)

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
        self.clips = []

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.clips = []

    def _eval(self, batch: dict | None, split: str) -> None:
        """Keeps each clip's frame probabilities: the epoch's end decodes them (after choosing how, on val)."""
        if batch is None:
            return
        logits, lengths, mask, y, loss = self.step(batch)
        self.log(f"{split}/loss", loss, batch_size=len(lengths), sync_dist=True)
        probs, y = torch.softmax(logits, -1).cpu().numpy(), y.cpu().numpy()
        for k, (i, n) in enumerate(zip(batch["index"].tolist(), lengths.tolist())):
            ref = [(s, e, self.labels[int(c)]) for s, e, c in batch["segments"][k].tolist()]
            self.clips.append((i, probs[k, :n], y[k, :n], ref))

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._eval(batch, "val")

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        self._eval(batch, "test")

    def choose_decoding(self) -> None:
        """The (median_frames, min_duration) of the grid with the best event F1 on this val epoch's clips
        (the first such in grid order: the least smoothing wins a tie)."""
        best, best_f1 = None, -1.0
        for m in dict.fromkeys(m for m, _ in self.grid):
            frames = [smooth(probs, m) for _, probs, _, _ in self.clips]
            for d in (d for mm, d in self.grid if mm == m):
                counts = np.zeros(3, dtype=int)
                for f, (_, _, _, ref) in zip(frames, self.clips):
                    counts += event_counts(ref, decode(f, self.hop, self.labels, d), *self.tolerance)
                score = f1(*counts.tolist())
                if score > best_f1 + 1e-12:
                    best, best_f1 = (m, d), score
        self.decoding.copy_(torch.tensor(best, dtype=torch.float64))

    def decode_clips(self, split: str) -> list[dict]:
        """Every kept clip decoded with the current settings; frame metrics updated. Rows: index,
        reference and predicted segments, event counts (tp, fp, fn) and per-class frame counts
        (``clip_metrics`` reads them)."""
        rows = []
        for i, probs, y, ref in self.clips:
            frames = smooth(probs, self.median_frames)
            hyp = decode(frames, self.hop, self.labels, self.min_duration)
            for metric in self.frame_metrics[split].values():
                metric.update(
                    torch.as_tensor(frames, device=self.device), torch.as_tensor(y, device=self.device)
                )
            rows.append({"index": i, "reference": ref, "predicted": hyp,
                         "events": list(event_counts(ref, hyp, *self.tolerance)),
                         "frames": frame_counts(frames, y, self.num_classes)})  # fmt: skip
        return rows

    def _epoch_end(self, split: str) -> list[dict]:
        if not self.clips:
            return []
        if split == "val" and self.grid and not self.trainer.sanity_checking:
            self.choose_decoding()
            self.log("val/median_frames", float(self.median_frames))
            self.log("val/min_duration", self.min_duration)
        rows = self.decode_clips(split)
        for name, metric in self.frame_metrics[split].items():
            self.log(f"{split}/{name}", metric.compute())
            metric.reset()
        counts = np.array([r["events"] for r in rows]).sum(0)
        self.log(f"{split}/event_f1", f1(*counts.tolist()))
        if self.speakers:
            self.log(f"{split}/der", diarization_error_rate([(r["reference"], r["predicted"]) for r in rows]))
        return rows

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self.test_rows = self._epoch_end("test")
        # what test decoded with: the tested checkpoint's own val choice (metrics.json's val/* keys other
        # than the monitored one are the last epoch's)
        self.log("decoding/median_frames", float(self.median_frames))
        self.log("decoding/min_duration", self.min_duration)
        self.write_test_rows(self.test_rows_file)

    @classmethod
    def clip_metrics(cls, rows: list[dict]) -> dict[str, ClipMetric]:
        """frame_acc: right frames over frames; frame_f1: macro-F1 of the frames' summed per-class counts;
        event_f1: 2 tp / (2 tp + fp + fn) of the summed event counts (as the logged values)."""
        tp, fp, fn = (np.array([r["frames"][k] for r in rows], dtype=float) for k in range(3))
        events = np.array([r["events"] for r in rows], dtype=float)
        return {
            "frame_acc": ratio_metric(tp.sum(-1), tp.sum(-1) + fn.sum(-1)),
            "frame_f1": ClipMetric((tp, fp, fn), macro_f1_of_counts),
            "event_f1": ratio_metric(2 * events[:, 0], 2 * events[:, 0] + events[:, 1] + events[:, 2]),
        }

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: its decoded segments as JSON text (``[[start, end, label], ...]``)."""
        logits, lengths = self(batch)
        probs = torch.softmax(logits, -1).cpu().numpy()
        rows = []
        for k, (i, n) in enumerate(zip(batch["index"].tolist(), lengths.tolist())):
            segs = decode(smooth(probs[k, :n], self.median_frames), self.hop, self.labels, self.min_duration)
            rows.append({"index": i, "segments": [list(s) for s in segs]})
        return rows
