"""Datasets of decoded audio clips and the log of clips left out (``bad_audio.jsonl``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from torch.utils.data import Dataset

from asr_transfer.data.audio import AudioError, load_audio
from asr_transfer.data.checks import ClipRules
from asr_transfer.data.manifest import Entry
from asr_transfer.data.targets import Targets


class BadAudioLog:
    """Skipped files, appended one JSON line at a time (safe from DataLoader workers) to ``bad_audio.jsonl``."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self.records: list[dict] = []

    def add(self, entry: Entry, split: str, err: AudioError) -> None:
        if any(r["audio_filepath"] == entry.audio_filepath and r["split"] == split for r in self.records):
            return  # decode-time faults recur every epoch: list each file once
        rec = {
            "audio_filepath": entry.audio_filepath,
            "split": split,
            "reason": err.reason,
            "detail": err.detail,
            "manifest": entry.manifest,
            "line": entry.line,
        }
        self.records.append(rec)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    def summary(self) -> Counter:
        """Skipped files per reason, read back from the file (DataLoader workers append there too)."""
        records = self.records
        if self.path is not None and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            records = [json.loads(x) for x in lines if x.strip()]
        unique = {(r["audio_filepath"], r["split"]): r["reason"] for r in records}
        return Counter(unique.values())


class AudioDataset(Dataset):
    """Items: ``{"wav": (samples,), "index": i, "target": targets.encode(entry)}`` (no ``target``
    without targets, e.g. predict.py); ``None`` for audio skipped under ``data.on_bad_audio=skip``.

    Decoding follows ``rules`` (the backbone's rate, crop to ``max_duration``, pad to ``min_samples``).
    """

    def __init__(
        self,
        entries: list[Entry],
        split: str,
        rules: ClipRules,
        bad_log: BadAudioLog,
        targets: Targets | None = None,
    ) -> None:
        self.entries, self.split, self.on_bad_audio = entries, split, rules.on_bad_audio
        self.bad_log, self.targets = bad_log, targets
        # what the decoded audio depends on (the feature cache keys its files by these)
        self.sample_rate, self.max_samples = rules.sample_rate, rules.max_samples
        self.min_samples = rules.min_samples

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        return [e.duration or 0.0 for e in self.entries]

    def target_item(self, i: int) -> dict:
        """``{"target": ...}`` for entry ``i`` (empty without targets): what any view of this split's
        clips (decoded audio, cached features) adds to its items so the task's collate finds it."""
        return {} if self.targets is None else {"target": self.targets.encode(self.entries[i])}

    def __getitem__(self, i: int) -> dict | None:
        e = self.entries[i]
        try:
            wav = load_audio(
                e.audio_filepath, self.sample_rate, self.max_samples, e.offset, self.min_samples, e.duration
            )
        except AudioError as err:
            if self.on_bad_audio == "skip":
                self.bad_log.add(e, self.split, err)
                return None
            raise err.at(f"{self.split} split, {e.manifest} line {e.line}") from None
        return {"wav": wav, "index": i, **self.target_item(i)}
