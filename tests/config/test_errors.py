"""Wrong options and keys fail with messages naming them; ``--cfg job`` prints the resolved config."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from tests.conftest import CONF, compose_train, run_python


# ----- (3) wrong options and keys ------------------------------------------------------------------------
def test_wrong_group_option_names_the_group_and_its_choices(tmp_path):
    with pytest.raises(MissingConfigException) as e:
        compose_train(["head=nosuch"], tmp_path)
    msg = str(e.value)
    assert "head=nosuch" in msg or "'head/nosuch'" in msg
    for choice in sorted(p.stem for p in (CONF / "head").glob("*.yaml")):
        assert f"\t{choice}" in msg or f" {choice}" in msg, msg  # Hydra lists the available options
    with pytest.raises(MissingConfigException) as e:
        compose_train(["data=nosuch"], tmp_path)
    assert all(c in str(e.value) for c in ("fsdd", "manifest", "folder", "speech_commands"))


def test_wrong_key_names_the_key(tmp_path):
    with pytest.raises(ConfigCompositionException) as e:
        compose_train(["optimizer.lrr=1"], tmp_path)
    msg = f"{e.value} {e.value.__cause__}"
    assert "optimizer.lrr" in msg and "Key 'lrr' is not in struct" in msg
    assert "+optimizer.lrr=1" in msg  # Hydra's hint for adding a key on purpose


# ----- (4) the CLI prints the resolved job config ---------------------------------------------------------
def test_cli_prints_job_config():
    out = run_python(
        "train.py", "--cfg", "job", "head=mlp", "data=folder", "data.corpus.root=/some/clips", timeout=120
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "backbone:" in text and "_target_: asr_transfer.backbones.whisper.WhisperEncoderBackbone" in text
    assert "_target_: asr_transfer.heads.utterance.MLPHead" in text
    assert "_target_: asr_transfer.data.corpora.folder.Folder" in text and "root: /some/clips" in text
