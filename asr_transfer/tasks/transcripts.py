"""The targets of ``task=seq2seq``: transcripts checked against Whisper's decoder before a run starts.

A transcript whose labels (prompt, start-of-transcript, language, task, no-timestamps, text,
end-of-text) need more positions than the decoder has is never truncated silently: it is named by
manifest and row, then left out (``data.long_audio=skip``, logged to ``bad_audio.jsonl``) or cut to the
tokens that fit (``data.long_audio=crop``, a warning; ``check_data.py`` lists every such row).
"""

from __future__ import annotations

from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.data.targets import TextTargets
from asr_transfer.text.whisper import WhisperText, is_multilingual


class DecoderTranscripts(TextTargets):
    """``text``: the run's ``WhisperText`` (tokenizer, prompt, prefix); ``limit``: the decoder's positions;
    ``long_audio``: skip | crop (``data.long_audio``, the same setting as for over-long clips)."""

    fault_reason, note_reason = "long_transcript", "cropped_transcript"

    def __init__(self, text: WhisperText, limit: int, long_audio: str = "skip") -> None:
        if long_audio not in ("skip", "crop"):
            raise ValueError(f"data.long_audio={long_audio!r}: use 'crop' or 'skip'")
        self.text, self.limit, self.long_audio = text, int(limit), long_audio
        self.cropped: list[ManifestError] = []

    @classmethod
    def from_config(cls, cfg) -> DecoderTranscripts:
        """From a run's config: the head's checkpoint (tokenizer, ``config.json``, no weights), the task's
        language / task / prompt and ``data.long_audio``."""
        from transformers import GenerationConfig, WhisperConfig

        from asr_transfer.utils.hub import load_pretrained

        path, overrides = cfg.head.name_or_path, dict(cfg.head.get("config_overrides") or {})
        if cfg.head.get("pretrained", True):
            config = load_pretrained(
                lambda p: WhisperConfig.from_pretrained(p, **overrides), path, "head.name_or_path"
            )
        else:
            config = WhisperConfig(**overrides)
        try:
            generation = load_pretrained(GenerationConfig.from_pretrained, path, "head.name_or_path")
        except (OSError, ValueError):  # a random decoder without a generation config (tests)
            generation = None
        task = cfg.task
        text = WhisperText(
            path, is_multilingual(generation, config), task.get("language"), task.get("task", "transcribe"),
            task.get("prompt"), task.get("normalizer", "english"),
        )  # fmt: skip
        return cls(text, config.max_target_positions, cfg.data.get("long_audio", "skip"))

    def skips(self, on_bad_audio: str) -> bool:
        return True  # only under long_audio=skip does fit reject rows, whatever on_bad_audio says

    def notes(self) -> list[ManifestError]:
        return list(self.cropped)

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        faults, self.cropped = [], []
        for rows in entries.values():
            for e in rows:
                n = 0 if e.text is None else self.text.n_tokens(e.text)
                if n <= self.limit:
                    continue
                what = f"the transcript takes {n} decoder positions (prompt + labels) but Whisper's decoder has {self.limit}"
                if self.long_audio == "skip":
                    fix = "left out (data.long_audio=skip): split the recording into shorter segments"
                    faults.append(ManifestError(e.manifest, e.line, f"{what}; {fix}", "text"))
                else:
                    e.text = self.text.crop(e.text, self.limit)
                    fix = f"cut to its first {self.text.n_tokens(e.text)} positions (data.long_audio=crop)"
                    self.cropped.append(ManifestError(e.manifest, e.line, f"{what}; {fix}", "text"))
        return faults
