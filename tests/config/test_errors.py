"""Wrong options and keys fail with messages naming them; ``--cfg job`` prints the resolved config."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from asr_transfer.pipeline.cli_keys import check_keys, check_keys_or_exit
from asr_transfer.pipeline.data_overrides import DataOverrideError, check_key, parse
from asr_transfer.utils.errors import ConfigError
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
            check_keys_or_exit(["data=fsdd", line])
        assert str(e.value).endswith(
            f"(a corpus's settings sit under data.corpus), command line. Fix: {moved}"
        )
    check_keys_or_exit(
        ["data.batch_size=4", "+data.root=/x"]
    )  # added on purpose: the datamodule takes or rejects it
    # eval.py / predict.py check data.* keys themselves: the same hint in their message
    (override,) = parse(["data.root=/x"])
    with pytest.raises(DataOverrideError, match=r"It is data\.corpus\.root now"):
        check_key(override, {"batch_size": 16, "corpus": {"root": None}}, "conf/data/fsdd.yaml")


def test_train_cli_stops_with_the_new_key():
    out = run_python("train.py", "data.root=/some/clips", timeout=120)
    assert out.returncode == 1 and out.stderr.strip() == (
        "Error: data.root is data.corpus.root now (a corpus's settings sit under data.corpus), command line. "
        "Fix: data.corpus.root=/some/clips"
    )


# ----- issue 31 (3): a misspelled key lists the closest valid keys, not Hydra's "+key" advice -------------
def test_a_misspelled_key_names_the_closest_valid_keys():
    with pytest.raises(ConfigError) as e:
        check_keys(["optimiser.lr=1e-3"])
    assert e.value.error_line().startswith(
        "Error: no key optimiser.lr in the config, override optimiser.lr=1e-3. Fix: optimizer.lr=1e-3 "
        "(closest valid keys: optimizer.lr"
    )
    assert "+optimiser" not in str(e.value)  # Hydra's advice, which exits 0 with the key unread
    with pytest.raises(
        ConfigError, match=r"Fix: trainer.max_epochs=3 \(closest valid keys: trainer.max_epochs"
    ):
        check_keys(["trainer.max_epoch=3"])
    with pytest.raises(ConfigError, match=r"Fix: head.hidden_size=8"):  # keys of the chosen group option
        check_keys(["head=mlp", "head.hiden_size=8"])


def test_an_appended_key_nothing_reads_is_refused_and_one_a_part_reads_is_kept():
    with pytest.raises(
        ConfigError, match=r"\+optimiser.lr=1e-3 adds a key that nothing reads .* Fix: optimizer.lr=1e-3"
    ):
        check_keys(["+optimiser.lr=1e-3"])
    # appended under a part: its class takes it (Trainer(max_steps=...)) or rejects it by name
    check_keys(["+trainer.max_steps=3", "+callbacks.timer._target_=x.Y", "++backbone.layer_drop=0.1"])
    check_keys(["head=mlp,linear", "optimizer.lr=1e-5,1e-1", "~probe"])  # sweeps and deletions parse
    check_keys(
        ["+max_listed=3"]
    )  # a new top-level key like no other: added on purpose (check_data.py reads it)
