"""The generated fixtures are the same in every process: a failure can be replayed byte for byte."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_python

# Writes every generated corpus into argv[1], prints one sha256 over all paths and bytes.
SCRIPT = """
import hashlib, sys
from pathlib import Path
from tests.conftest import write_tone_corpus
from tests.fakes import fake_folder, fake_fsdd, fake_librispeech, fake_speech_commands
root = Path(sys.argv[1])
write_tone_corpus(root / "tones")
fake_fsdd(root / "fsdd", per_digit=1)
fake_folder(root / "folder")
fake_speech_commands(root / "sc", per_word=2, noise_seconds=2.0)
fake_librispeech(root / "ls")
h = hashlib.sha256()
for f in sorted(p for p in root.rglob("*") if p.is_file()):
    h.update(str(f.relative_to(root)).encode() + b"\\0" + f.read_bytes())
print(h.hexdigest())
"""


def _corpus_hash(out: Path, hash_seed: str) -> str:
    proc = run_python("-c", SCRIPT, out, timeout=120, PYTHONHASHSEED=hash_seed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_generated_corpora_do_not_depend_on_pythonhashseed(tmp_path):
    a, b = _corpus_hash(tmp_path / "a", "1"), _corpus_hash(tmp_path / "b", "2")
    assert a == b
    # the hash covers the whole corpus: 3 classes x 4 speakers x 4 clips in the tone corpus alone
    assert len(list((tmp_path / "a" / "tones" / "audio").glob("*.wav"))) == 3 * 4 * 4
