"""The corpora's download paths, end to end against a real HTTP server on 127.0.0.1 (``tests/loopback.py``)
serving generated archives packed the way the real ones are: FSDD's GitHub tag tarball, Speech Commands
v0.01/v0.02's flat tarballs, LibriSpeech's ``<subset>.tar.gz`` and Libri-Light's ``librispeech_finetuning.tgz``.

First download, a re-run that downloads nothing, a truncated transfer and a checksum mismatch (a clear
error, nothing half-extracted, the next run clean), resuming where the server honours ``Range``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from asr_transfer.data.corpora.fsdd import FSDD
from asr_transfer.data.corpora.librispeech import LibriSpeech
from asr_transfer.data.corpora.speech_commands import SpeechCommands
from asr_transfer.utils.errors import DownloadError
from tests.fakes import fake_fsdd, fake_librispeech, fake_speech_commands
from tests.loopback import ArchiveServer

FSDD_TAR = "v1.0.10.tar.gz"
FSDD_TOP = "free-spoken-digit-dataset-1.0.10"


def tar_gz(folder: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(folder, arcname=arcname)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def fsdd_archive(tmp_path_factory) -> bytes:
    """GitHub's tag tarball: ``free-spoken-digit-dataset-1.0.10/recordings/*.wav`` (and a README)."""
    src = fake_fsdd(tmp_path_factory.mktemp("fsdd_src") / FSDD_TOP, per_digit=1, digits=3)
    (src / "README.md").write_text("FSDD\n")
    return tar_gz(src, FSDD_TOP)


@pytest.fixture
def server():
    with ArchiveServer() as s:
        yield s


def leftovers(folder: Path) -> list[str]:
    """What an interrupted download or extraction could leave: temp folders, archives, partial files."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".extracting") or ".tar" in p.name)


def fsdd(download_dir: Path, server: ArchiveServer, manifests: Path, **kw) -> FSDD:
    return FSDD(
        None, ["nicolas"], ["yweweler"], download_dir=str(download_dir), mirror=server.url,
        manifest_dir=str(manifests), **kw,
    )  # fmt: skip


def test_fsdd_first_download_then_nothing(server, fsdd_archive, tmp_path):
    server.files[FSDD_TAR] = fsdd_archive
    dl = tmp_path / "dl"
    paths = fsdd(dl, server, tmp_path / "m1", sha256=sha(fsdd_archive)).prepare()
    rows = [json.loads(x) for s in ("train", "val", "test") for x in Path(paths[s]).read_text().splitlines()]
    assert len(rows) == 3 * 4 and all(Path(r["audio_filepath"]).is_file() for r in rows)
    assert {Path(r["audio_filepath"]).parent for r in rows} == {dl / FSDD_TOP / "recordings"}
    assert server.downloads(FSDD_TAR) == [None]
    assert leftovers(dl) == []  # the archive is deleted once extracted; no temp folders

    again = fsdd(dl, server, tmp_path / "m2", sha256=sha(fsdd_archive)).prepare()  # fresh manifests
    assert server.downloads(FSDD_TAR) == [None]  # the re-run downloaded nothing
    assert Path(again["train"]).read_text() == Path(paths["train"]).read_text()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_fsdd_truncated_download_is_an_error_then_the_next_run_completes(
    server, fsdd_archive, tmp_path, ranges
):
    server.files[FSDD_TAR], server.ranges = fsdd_archive, ranges
    cut = len(fsdd_archive) // 3
    server.truncate[FSDD_TAR] = cut
    dl = tmp_path / "dl"
    with pytest.raises(
        DownloadError,
        match=rf"truncated download: {cut} of {len(fsdd_archive)} bytes arrived, .*{FSDD_TAR}. Fix: run again",
    ):
        fsdd(dl, server, tmp_path / "m", sha256=sha(fsdd_archive)).prepare()
    assert not (dl / FSDD_TOP).exists()  # nothing extracted
    assert leftovers(dl) == [f"{FSDD_TAR}.part"] and (dl / f"{FSDD_TAR}.part").stat().st_size == cut

    paths = fsdd(dl, server, tmp_path / "m", sha256=sha(fsdd_archive)).prepare()
    assert len(Path(paths["train"]).read_text().splitlines()) == 3 * 2
    # with Range support the second request continues where the first stopped; without, it starts over
    assert server.downloads(FSDD_TAR) == [None, f"bytes={cut}-"]
    assert leftovers(dl) == []


def test_fsdd_checksum_mismatch_deletes_the_download(server, fsdd_archive, tmp_path):
    server.files[FSDD_TAR] = fsdd_archive
    dl = tmp_path / "dl"
    with pytest.raises(
        DownloadError,
        match=rf"checksum mismatch: SHA-256 {sha(fsdd_archive)}, expected 00ff .*, .*{FSDD_TAR}. Fix: ",
    ):
        fsdd(dl, server, tmp_path / "m", sha256="00ff").prepare()
    assert not (dl / FSDD_TOP).exists() and leftovers(dl) == []  # a bad file cannot be resumed: gone
    fsdd(dl, server, tmp_path / "m", sha256=sha(fsdd_archive)).prepare()  # the next run starts clean
    assert server.downloads(FSDD_TAR) == [None, None]


def test_an_unreadable_archive_leaves_nothing_behind(server, tmp_path):
    server.files[FSDD_TAR] = b"<html>rate limited</html>"
    dl = tmp_path / "dl"
    with pytest.raises(DownloadError, match="not a readable archive"):
        fsdd(dl, server, tmp_path / "m").prepare()
    assert list(dl.iterdir()) == []


def test_an_archive_without_the_expected_folder_names_it(server, tmp_path):
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    server.files[FSDD_TAR] = tar_gz(other, "something-else")
    with pytest.raises(DownloadError, match=f"does not contain {FSDD_TOP}/recordings"):
        fsdd(tmp_path / "dl", server, tmp_path / "m").prepare()
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.parametrize("version", ["v0.01", "v0.02"])
def test_speech_commands_download(server, tmp_path, version):
    """The tarballs have no top folder (``./yes/...``, ``./validation_list.txt``): extracted into
    ``SpeechCommands/speech_commands_<version>`` as torchaudio lays it out."""
    src = fake_speech_commands(tmp_path / "src", per_word=3)
    name = f"speech_commands_{version}.tar.gz"
    server.files[name] = data = tar_gz(src, ".")
    dl = tmp_path / "dl"

    def corpus(manifests: str, **kw) -> SpeechCommands:
        return SpeechCommands(
            None,
            version,
            download_dir=str(dl),
            mirror=server.url,
            manifest_dir=str(tmp_path / manifests),
            **kw,
        )

    # a mirror is checked against the official archive's checksum unless told otherwise
    with pytest.raises(DownloadError, match="checksum mismatch"):
        corpus("m0").prepare()
    paths = corpus("m1", sha256=sha(data)).prepare()
    base = dl / "SpeechCommands" / f"speech_commands_{version}"
    assert (base / "validation_list.txt").is_file() and (base / "yes").is_dir()
    val = [json.loads(x) for x in Path(paths["val"]).read_text().splitlines()]
    assert {r["label"] for r in val} >= {"yes", "_unknown_", "_silence_"}
    corpus("m2", sha256=sha(data)).prepare()
    assert len(server.downloads(name)) == 2  # the failed one and the first good one; the re-run none
    assert leftovers(dl) == []


def test_librispeech_and_librilight_download(server, tmp_path):
    """``<subset>.tar.gz`` holds ``LibriSpeech/<subset>/...``; two subsets extract into one LibriSpeech/."""
    src = tmp_path / "src"
    fake_librispeech(src)
    for name in ("BOOKS.TXT", "README.TXT"):
        (src / "LibriSpeech" / name).write_text("x\n")
    sums = {}
    for subset in ("dev-clean", "test-clean"):
        one = tmp_path / "pack" / subset / "LibriSpeech"
        one.mkdir(parents=True)
        (src / "LibriSpeech" / subset).rename(one / subset)
        (one / "README.TXT").write_text("x\n")
        server.files[f"{subset}.tar.gz"] = data = tar_gz(one, "LibriSpeech")
        sums[subset] = sha(data)
    server.files["librispeech_finetuning.tgz"] = data = tar_gz(
        src / "librispeech_finetuning", "librispeech_finetuning"
    )
    sums["librispeech_finetuning"] = sha(data)
    root = tmp_path / "root"

    def corpus(manifests: str) -> LibriSpeech:
        return LibriSpeech(
            str(root), [], ["dev-clean"], ["test-clean"], librilight="1h", mirror=server.url, sha256=sums,
            manifest_dir=str(tmp_path / manifests),
        )  # fmt: skip

    paths = corpus("m1").prepare()
    counts = {s: len(Path(paths[s]).read_text().splitlines()) for s in ("train", "val", "test")}
    assert counts == {"train": 2, "val": 2, "test": 1}
    assert sorted(p.name for p in (root / "LibriSpeech").iterdir()) == ["dev-clean", "test-clean"]
    corpus("m2").prepare()
    # each archive fetched once, by the first run
    assert sorted(n for n, _ in server.requests) == [
        "dev-clean.tar.gz", "librispeech_finetuning.tgz", "test-clean.tar.gz"
    ]  # fmt: skip
    assert leftovers(root) == []
