"""Wrong options and keys fail with messages naming them; ``--cfg job`` prints the resolved config."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from asr_transfer.pipeline.data_overrides import DataOverrideError, check_key, moved_keys_or_exit, parse
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


def test_a_corpus_setting_at_its_old_place_names_its_new_key():
    # data.root / data.test_speakers were datamodule keys before data.corpus.*: name where they went
    for line, moved in [
        ("data.root=/x", "data.corpus.root=/x"),
        ("data.test_speakers=[george]", "data.corpus.test_speakers=[george]"),
    ]:
        with pytest.raises(SystemExit) as e:
            moved_keys_or_exit(["data=fsdd", line])
        assert str(e.value).endswith(f"(a corpus's settings sit under data.corpus): {moved}"), e.value
    assert moved_keys_or_exit(["data.batch_size=4", "data.rooot=/x", "+data.root=/x"]) is None  # Hydra's case
    # eval.py / predict.py check data.* keys themselves: the same hint in their message
    (override,) = parse(["data.root=/x"])
    with pytest.raises(DataOverrideError, match=r"It is data\.corpus\.root now"):
        check_key(override, {"batch_size": 16, "corpus": {"root": None}}, "conf/data/fsdd.yaml")


def test_train_cli_stops_with_the_new_key():
    out = run_python("train.py", "data.root=/some/clips", timeout=120)
    assert out.returncode == 1 and out.stderr.strip() == (
        "Error: data.root is data.corpus.root now (a corpus's settings sit under data.corpus): "
        "data.corpus.root=/some/clips"
    )
