"""The rules a run applies to each manifest entry before training, in one place: the datamodule
applies them (stopping or skipping), ``check_data.py`` applies the same ones and lists every finding.

Each finding has a severity: ``error`` (a run stops), ``skipped`` (a run leaves the entry out and goes
on) or ``note`` (a run uses the entry, changed: cropped, zero-padded).
"""

from __future__ import annotations

from dataclasses import dataclass

from asr_transfer.data.audio import AudioError, AudioInfo, check_header
from asr_transfer.data.manifest import Entry


@dataclass
class Finding:
    reason: str
    severity: str  # error | skipped | note
    detail: str = ""

    @property
    def drops(self) -> bool:
        return self.severity in ("error", "skipped")


@dataclass
class ClipRules:
    """``on_bad_audio``: error | skip. ``max_duration`` (s) with ``long_audio``: crop | skip; clips whose
    targets a crop would cut (``crop_ok=False``: transcripts) are skipped whatever ``long_audio`` says.
    ``min_samples`` at ``sample_rate``: shorter clips are zero-padded to it (the backbone's
    ``min_samples``; 0: no minimum). The datamodule is the one place that builds these from a data config."""

    sample_rate: int
    min_samples: int = 0
    max_duration: float | None = None
    long_audio: str = "crop"
    on_bad_audio: str = "error"
    crop_ok: bool = True

    def __post_init__(self) -> None:
        if self.on_bad_audio not in ("error", "skip"):
            raise ValueError(f"data.on_bad_audio={self.on_bad_audio!r}: use 'error' or 'skip'")
        if self.long_audio not in ("crop", "skip"):
            raise ValueError(f"data.long_audio={self.long_audio!r}: use 'crop' or 'skip'")

    @property
    def max_samples(self) -> int | None:
        return None if self.max_duration is None else int(self.max_duration * self.sample_rate)

    def bad_audio(self, err: AudioError) -> Finding:
        """A file that does not read: the run stops (``on_bad_audio=error``) or leaves it out."""
        return Finding(err.reason, "error" if self.on_bad_audio == "error" else "skipped", err.detail)

    def keep(self, entries: list[Entry], split: str, bad_log, where=None) -> list[Entry]:
        """The entries a run reads, header-checked now (no decode) so a bad file at the end of a list
        fails in seconds: the first ``error`` raises (naming ``where(entry)``: split, manifest line),
        skipped ones go to ``bad_log``; kept ones get the duration the run uses."""
        where = where or (lambda e: f"{split} split, {e.manifest} line {e.line}")
        kept = []
        for e in entries:
            try:
                duration, findings = self.judge(e, check_header(e.audio_filepath))
            except AudioError as err:
                duration, findings = None, [self.bad_audio(err)]
            drop = next((f for f in findings if f.drops), None)
            if drop is None:
                e.duration = duration
                kept.append(e)
                continue
            err = AudioError(e.audio_filepath, drop.reason, drop.detail)
            if drop.severity == "error":
                raise err.at(where(e))
            bad_log.add(e, split, err)
        return kept

    def judge(self, entry: Entry, info: AudioInfo) -> tuple[float | None, list[Finding]]:
        """(the duration the run uses, or None when the entry is dropped; what happens to it)."""
        in_file = info.duration - entry.offset
        if in_file <= 0:
            err = AudioError(
                entry.audio_filepath,
                "zero_samples",
                f"offset {entry.offset} s >= duration {info.duration:.2f} s",
            )
            return None, [self.bad_audio(err)]
        duration = entry.duration if entry.duration is not None else in_file  # the manifest's wins
        found = []
        if self.max_duration is not None and duration > self.max_duration:
            detail = f"{duration:.1f} s > data.max_duration={self.max_duration}"
            # A crop would cut the audio but not its transcript: such targets are skipped instead.
            if self.long_audio == "skip" or not self.crop_ok:
                return None, [Finding("too_long", "skipped", detail)]  # whatever on_bad_audio says
            found.append(Finding("cropped", "note", detail))
            duration = float(self.max_duration)
        if duration * self.sample_rate < self.min_samples:
            detail = f"{duration * 1000:.1f} ms < {self.min_samples} samples at {self.sample_rate} Hz"
            found.append(Finding("padded", "note", detail))
        return duration, found
