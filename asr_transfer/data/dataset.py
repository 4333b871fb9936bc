"""Datasets of decoded audio clips and the log of clips left out (``bad_audio.jsonl``)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from torch.utils.data import Dataset

from asr_transfer.data.audio import AudioError, load_audio
from asr_transfer.data.manifest import Entry


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
    """Items: ``{"wav": (samples,), "index": i, "label": class id | "text": str}``; ``None`` for skipped audio."""

    def __init__(
        self,
        entries: list[Entry],
        split: str,
        sample_rate: int,
        label_index: dict[str, int] | None,
        max_samples: int | None,
        on_bad_audio: str,
        bad_log: BadAudioLog,
        min_samples: int = 400,
    ) -> None:
        self.entries, self.split, self.sample_rate = entries, split, sample_rate
        self.label_index, self.max_samples, self.min_samples = label_index, max_samples, min_samples
        self.on_bad_audio, self.bad_log = on_bad_audio, bad_log

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        return [e.duration or 0.0 for e in self.entries]

    def __getitem__(self, i: int) -> dict | None:
        e = self.entries[i]
        try:
            wav = load_audio(e.audio_filepath, self.sample_rate, self.max_samples, e.offset, self.min_samples)
        except AudioError as err:
            if self.on_bad_audio == "skip":
                self.bad_log.add(e, self.split, err)
                return None
            raise AudioError(
                err.path,
                err.reason,
                f"{self.split} split, {e.manifest} line {e.line}" + (f"; {err.detail}" if err.detail else ""),
            ) from None
        item = {"wav": wav, "index": i}
        if self.label_index is not None:
            item["label"] = self.label_index[e.label]
        if e.text is not None:
            item["text"] = e.text
        return item


def natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
