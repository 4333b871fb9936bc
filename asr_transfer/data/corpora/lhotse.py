"""Lhotse manifests (what k2/icefall, NeMo and ESPnet read) as our manifests.

Each split is a ``CutSet`` file (``cuts_train.jsonl.gz``), or a ``{recordings, supervisions}`` pair of
``RecordingSet`` / ``SupervisionSet`` files (one row per supervision). A row is the cut's stretch of its
recording: ``offset`` = the cut's start, ``duration`` = its length; the datamodule reads only that
stretch (``data/audio.py``: soundfile seeks, nothing before or after is decoded). The supervision's text
becomes ``text``, its speaker ``speaker``, and ``label_field`` (a supervision field such as ``speaker``,
``language``, ``gender``, or a key of its ``custom`` dict) the class label.

Files are read lazily (cut by cut), so a large CutSet is never held in memory. What a plain file read
cannot reproduce is an error naming the cut: recordings in memory, from URLs or shell commands,
several source files, channel selections of multi-channel audio, and transforms (speed perturbation).
"""

from __future__ import annotations

from pathlib import Path

from asr_transfer.data.corpora.base import Corpus, require
from asr_transfer.utils.hashing import file_key

SUPERVISION_FIELDS = ("text", "speaker", "language", "gender")


class LhotseCorpus(Corpus):
    """``data=lhotse``: ``train``/``val``/``test`` are each a CutSet path or ``{recordings, supervisions}``."""

    name = "lhotse"

    def __init__(
        self,
        train: str | dict,
        val: str | dict | None = None,
        test: str | dict | None = None,
        label_field: str | None = None,
        **common,
    ) -> None:
        super().__init__(**common)
        self.sources = {s: v for s, v in (("train", train), ("val", val), ("test", test)) if v}
        if "train" not in self.sources:
            raise ValueError(
                "data.corpus.train is not set: give a CutSet (cuts_train.jsonl.gz) or {recordings, supervisions}"
            )
        for split, src in self.sources.items():
            for path in self.files(split, src):
                if not Path(path).is_file():
                    raise FileNotFoundError(f"data.corpus.{split}: {path} does not exist")
        self.label_field = label_field

    def files(self, split: str, src) -> list[str]:
        if isinstance(src, str):
            return [src]
        if set(src) != {"recordings", "supervisions"}:
            raise ValueError(
                f"data.corpus.{split}={dict(src)}: give a CutSet path or exactly {{recordings: ..., supervisions: ...}}"
            )
        return [src["recordings"], src["supervisions"]]

    def settings(self) -> dict:
        return {
            "files": {
                s: [file_key(str(Path(p).resolve())) for p in self.files(s, v)]
                for s, v in self.sources.items()
            },
            "label_field": self.label_field,
        }

    def build(self) -> dict[str, list[dict]]:
        return {split: list(self.rows(split, src)) for split, src in self.sources.items()}

    def rows(self, split: str, src):
        lhotse = require("lhotse", "lhotse", "lhotse")
        CutSet, RecordingSet, SupervisionSet = lhotse.CutSet, lhotse.RecordingSet, lhotse.SupervisionSet

        if isinstance(src, str):
            for cut in CutSet.from_jsonl_lazy(src):
                where = f"data.corpus.{split} ({src}) cut {cut.id!r}"
                if not hasattr(cut, "recording") or cut.recording is None:
                    raise ValueError(
                        f"{where}: a {type(cut).__name__} without one recording (mixed or padding cuts are not read)"
                    )
                yield self.row(
                    where, cut.recording, cut.start, cut.duration, cut.supervisions, src, cut.channel
                )
            return
        # metadata only (no audio): small enough to index whole
        recordings = {r.id: r for r in RecordingSet.from_file(src["recordings"])}
        for sup in SupervisionSet.from_jsonl_lazy(src["supervisions"]):
            where = f"data.corpus.{split} ({src['supervisions']}) supervision {sup.id!r}"
            if sup.recording_id not in recordings:
                raise ValueError(f"{where}: recording {sup.recording_id!r} is not in {src['recordings']}")
            yield self.row(
                where,
                recordings[sup.recording_id],
                sup.start,
                sup.duration,
                [sup],
                src["recordings"],
                sup.channel,
            )

    def row(self, where: str, rec, start: float, duration: float, sups: list, manifest: str, channel) -> dict:
        if len(rec.sources) != 1 or rec.sources[0].type != "file":
            kinds = [s.type for s in rec.sources]
            raise ValueError(
                f"{where}: recording {rec.id!r} has sources {kinds}; only one 'file' source is read"
            )
        if rec.transforms:
            raise ValueError(
                f"{where}: recording {rec.id!r} has transforms (speed/volume perturbation): not supported"
            )
        channels = channel if isinstance(channel, list) else [channel]
        if rec.num_channels > 1 and sorted(channels) != list(range(rec.num_channels)):
            raise ValueError(
                f"{where}: channel {channel} of a {rec.num_channels}-channel recording; every channel is read (averaged)"
            )
        path = Path(rec.sources[0].source).expanduser()
        if not path.is_absolute() and (Path(manifest).parent / path).exists():
            path = Path(manifest).parent / path  # relative to the manifest's folder, else to the working dir
        out = {"audio_filepath": str(path.resolve()), "offset": float(start), "duration": float(duration)}
        if not sups:
            raise ValueError(f"{where}: no supervision: nothing to learn (give cuts with supervisions)")
        sups = sorted(sups, key=lambda s: s.start)
        texts = [s.text for s in sups if s.text]
        if texts:
            out["text"] = " ".join(texts)
        for key, field in (("speaker", "speaker"), ("label", self.label_field)):
            if not field:
                continue
            values = {self.field(s, field) for s in sups} - {None}
            if len(values) > 1:
                raise ValueError(f"{where}: its supervisions disagree on {field} ({sorted(values)})")
            if values:
                out[key] = str(values.pop())
            elif key == "label":
                raise ValueError(
                    f"{where}: no supervision {field!r} (data.corpus.label_field) to use as its label"
                )
        return out

    @staticmethod
    def field(sup, name: str):
        if name in SUPERVISION_FIELDS:
            return getattr(sup, name)
        return (sup.custom or {}).get(name)
