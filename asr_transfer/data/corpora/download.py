"""Download a corpus archive once, verify it and extract it atomically.

One downloader for every corpus (FSDD, Speech Commands, LibriSpeech, Libri-Light), because the
library ones each miss a property a 6 GB archive over a flaky link needs: ``torch.hub``'s does not
resume and accepts a short read as the whole file; torchaudio's dataset classes skip the checksum
for any URL but the official one (so a mirror is never verified) and extract in place, where an
interrupted extraction looks like a finished one.

The rules:
  * ``dest/<marker>`` present: done, nothing touches the network (a re-run downloads nothing);
  * bytes go to ``<archive>.part``; a server that honours ``Range`` continues it where an earlier
    run stopped (206), one that does not sends it again from the start (200);
  * fewer bytes than the server announced is a truncated download: a clear error, and the ``.part``
    is kept for the next run to resume;
  * a known SHA-256 that does not match: a clear error, the file is deleted (it cannot be resumed);
  * the archive is extracted into a hidden folder next to ``dest`` and only ``marker`` is renamed into
    place, so ``dest/<marker>`` exists only when complete; leftovers of an interrupted run are
    removed first; the archive is deleted once extracted (the marker is what later runs look for).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from asr_transfer.utils.errors import DownloadError, first_line

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` with its folder replaced by ``mirror`` (``data.corpus.mirror``): the same archive name
    fetched from another server (a local mirror, a proxy, a test server)."""
    if not mirror:
        return url
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}"


def download_and_extract(
    url: str, dest: Path, marker: str, sha256: str | None = None, into: str = "", key: str = "data.corpus"
) -> Path:
    """``dest/marker`` after downloading ``url`` once and extracting it (see the module docstring).

    ``into``: the folder (relative to the extraction root) the archive's members go to, for archives
    packed without a top folder (Speech Commands). ``key`` names the config node in error messages.
    """
    dest = Path(dest)
    target = dest / marker
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / url.rsplit("/", 1)[-1]
    if not archive.is_file():
        fetch(url, archive, sha256, key)
    elif sha256:
        verify(archive, sha256, url, key)
    work = dest / f".extracting-{archive.name}"
    shutil.rmtree(work, ignore_errors=True)  # an earlier run stopped mid-extraction
    try:
        extract(archive, work / into)
        if not (work / marker).exists():
            archive.unlink()  # the wrong archive: the next run fetches it again
            raise DownloadError(
                f"the archive does not contain {marker}",
                f"{url} ({archive})",
                f"check that {key}.mirror serves the right archive",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / marker, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    archive.unlink()
    return target


def fetch(url: str, archive: Path, sha256: str | None, key: str) -> None:
    """Download ``url`` to ``archive`` through ``archive.part`` (resumed with ``Range`` when possible)."""
    part = archive.with_name(archive.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    log.info("downloading %s -> %s%s", url, archive, f" (resuming at {have} bytes)" if have else "")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            if have and r.status != 206:  # the server ignored Range: start again
                have = 0
            total = r.headers.get("Content-Length")
            total = None if total is None else have + int(total)
            with open(part, "ab" if have else "wb") as f:
                got = have + _copy(r, f)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # the .part is already complete (or longer than the file): start again
            part.unlink(missing_ok=True)
        raise DownloadError(
            f"could not download (HTTP {e.code} {e.reason})",
            url,
            f"download it by hand, extract it and set {key}.root to that folder, or point {key}.mirror at "
            "a server that has it",
        ) from e
    except OSError as e:
        raise DownloadError(
            f"could not download ({first_line(e)})",
            url,
            f"run again to resume; or download it by hand, extract it and set {key}.root to that folder, "
            f"or point {key}.mirror at a server that has it",
        ) from e
    if total is not None and got < total:
        raise DownloadError(
            f"truncated download: {got} of {total} bytes arrived",
            url,
            f"run again to resume ({part} is kept)",
        )
    if sha256:
        verify(part, sha256, url, key)
    os.replace(part, archive)


def _copy(response, f) -> int:
    n = 0
    while True:
        try:
            chunk = response.read(CHUNK)
        except Exception as e:  # noqa: BLE001 - http.client.IncompleteRead and friends: a short transfer
            log.warning("transfer stopped after %d bytes (%s)", n, e)
            return n
        if not chunk:
            return n
        f.write(chunk)
        n += len(chunk)


def verify(path: Path, sha256: str, url: str, key: str) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    if h.hexdigest() != sha256.lower():
        path.unlink()
        raise DownloadError(
            f"checksum mismatch: SHA-256 {h.hexdigest()}, expected {sha256} (the file was deleted)",
            url,
            f"run again to download it afresh; if a mirror serves a different build of the archive, set "
            f"{key}.sha256 to its checksum",
        )


def extract(archive: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(out)
        else:
            with tarfile.open(archive) as t:
                t.extractall(out, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        archive.unlink(missing_ok=True)  # a corrupt archive is never reused
        raise DownloadError(
            f"not a readable archive ({first_line(e)})", str(archive), "run again to download it afresh"
        ) from e
