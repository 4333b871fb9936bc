"""Corpus preparation: find or download the audio, then write one manifest per split.

Nothing outside a corpus module knows its folder layout; the datamodule only reads manifests.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.hashing import stable_hash

log = logging.getLogger(__name__)


def require(module: str, extra: str, corpus: str):
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"data={corpus} needs the {module!r} package: pip install 'asr_transfer[{extra}]' ({e})"
        ) from e


class Corpus:
    """``data.corpus``: find or download a corpus's audio and write one manifest per split.

    Subclasses set ``name`` and implement ``build() -> {split: [manifest rows]}`` and ``settings()``
    (what changes the rows); ``prepare()`` writes the manifests once per settings. They take their
    own settings and pass ``**common`` (``manifest_dir``, declared here once) on.
    """

    name = "corpus"

    def __init__(self, manifest_dir: str = ".cache/manifests") -> None:
        self.manifest_dir = Path(manifest_dir)

    def settings(self) -> dict:
        """What changes the manifests (their folder is keyed by it)."""
        return {}

    def build(self) -> dict[str, list[dict]]:
        raise NotImplementedError

    def origin(self, entry, field: str) -> str | None:
        """Where ``field`` (``audio_filepath``, ``label``, ``text``...) of a manifest entry came from, for
        corpora whose rows are not files (a dataset row and column); None: the manifest line says it."""
        return None

    def labels(self) -> list[str] | None:
        """A fixed class order the corpus defines (e.g. SUPERB's); None: the training split's, sorted."""
        return None

    def prepare(self) -> dict[str, str | None]:
        from asr_transfer.data.manifest import write_manifest

        out = self.manifest_dir / f"{self.name}-{stable_hash(self.settings())}"
        done = out / "manifests.json"
        if done.is_file():
            return json.loads(done.read_text())
        splits = self.build()
        paths: dict[str, str | None] = {}
        for split in ("train", "val", "test"):
            rows = splits.get(split)
            paths[split] = str(write_manifest(out / f"{split}.jsonl", rows)) if rows else None
        write_json(done, paths, indent=1, sort_keys=False)  # written last: a half-prepared corpus is redone
        log.info(
            "%s manifests in %s (%s)",
            self.name,
            out,
            ", ".join(f"{s}={len(r)}" for s, r in splits.items() if r),
        )
        return paths
