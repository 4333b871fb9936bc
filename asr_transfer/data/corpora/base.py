"""Corpus preparation: find or download the audio, then write one manifest per split.

Nothing outside a corpus module knows its folder layout; the datamodule only reads manifests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)


class Corpus:
    """Subclasses implement ``build() -> {split: [entry dicts]}``; ``prepare()`` writes manifests once."""

    name = "corpus"

    def __init__(self, manifest_dir: str) -> None:
        self.manifest_dir = Path(manifest_dir)

    def settings(self) -> dict:
        """What changes the manifests (their folder is keyed by it)."""
        return {}

    def build(self) -> dict[str, list[dict]]:
        raise NotImplementedError

    def prepare(self) -> dict[str, str | None]:
        from asr_transfer.data.manifest import write_manifest

        key = hashlib.sha1(json.dumps(self.settings(), sort_keys=True, default=str).encode()).hexdigest()[:10]
        out = self.manifest_dir / f"{self.name}-{key}"
        done = out / "manifests.json"
        if done.is_file():
            return json.loads(done.read_text())
        splits = self.build()
        paths: dict[str, str | None] = {}
        for split in ("train", "val", "test"):
            rows = splits.get(split)
            paths[split] = str(write_manifest(out / f"{split}.jsonl", rows)) if rows else None
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(paths, indent=1))
        tmp.replace(done)  # written last and atomically: a half-prepared corpus is redone
        log.info(
            "%s manifests in %s (%s)",
            self.name,
            out,
            ", ".join(f"{s}={len(r)}" for s, r in splits.items() if r),
        )
        return paths


def download_and_extract(url: str, dest: Path, marker: str) -> Path:
    """Download an archive to ``dest`` once (torch.hub's downloader: progress bar, temp file) and extract it."""
    import torch.hub

    dest.mkdir(parents=True, exist_ok=True)
    if (dest / marker).exists():
        return dest / marker
    archive = dest / url.rsplit("/", 1)[-1]
    if not archive.exists():
        log.info("downloading %s -> %s", url, archive)
        try:
            torch.hub.download_url_to_file(url, str(archive), progress=True)
        except Exception as e:
            raise RuntimeError(
                f"could not download {url} ({e}); download it by hand and set data.root"
            ) from e
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    if not (dest / marker).exists():
        raise RuntimeError(f"{archive} did not contain {marker}")
    return dest / marker
