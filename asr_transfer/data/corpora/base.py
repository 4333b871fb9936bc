"""Corpus preparation: find or download the audio, then write one manifest per split.

Nothing outside a corpus module knows its folder layout; the datamodule only reads manifests.
"""

from __future__ import annotations

import json
import logging
import tarfile
import zipfile
from pathlib import Path

from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.errors import DownloadError, first_line
from asr_transfer.utils.hashing import stable_hash

log = logging.getLogger(__name__)


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
            raise DownloadError(
                f"could not download {url} ({first_line(e)})",
                f"into {dest}",
                "download it by hand, extract it and set data.corpus.root to that folder",
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
