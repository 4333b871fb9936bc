"""``eval.py`` / ``predict.py`` overrides as users type them: ``data.*`` edits the checkpoint's own data config,
``data=<corpus>`` switches corpus, a wrong key names the valid ones (one training run for the module)."""

from __future__ import annotations

import json
import shutil

import pytest

from asr_transfer.data.audio import AudioError
from asr_transfer.pipeline.data_overrides import DataOverrideError, checkpoint_data
from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.predict import run as run_predict
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, folder_corpus


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch tiny-Whisper run on ``data=folder``: (base dir, clips root, best checkpoint, its metrics)."""
    base = tmp_path_factory.mktemp("folder_run")
    clips = folder_corpus(base / "clips")
    cfg = compose_train(
        [
            "data=folder",
            f"data.corpus.root={clips}",
            f"paths.cache_dir={base / 'cache'}",
            "callbacks.progress_bar=null",
            "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu",
            *TINY_WHISPER,
            "trainer.max_epochs=2",
            "optimizer.lr=0.01",
        ],
        base / "run",
    )
    train(cfg)
    best = next((base / "run" / "checkpoints").glob("best-*.ckpt"))
    return base, clips, best, json.loads((base / "run" / "metrics.json").read_text())


def _eval(best, out, *overrides):
    cfg = compose_train([f"ckpt_path={best}", "+trainer.enable_progress_bar=false", *overrides], out, "eval")
    return cfg, evaluate(cfg)


def test_data_root_elsewhere_reproduces_the_runs_test_metrics(run, tmp_path):
    base, clips, best, train_metrics = run
    copy = shutil.copytree(clips, tmp_path / "elsewhere" / "clips")
    hidden = clips.rename(base / "hidden")  # the original is gone: eval can only read the copy
    try:
        cfg, metrics = _eval(best, tmp_path / "eval", f"data.corpus.root={copy}")
    finally:
        hidden.rename(clips)
    assert cfg.data.corpus.root == str(copy)
    assert cfg.data.corpus._target_.endswith("Folder")  # every other key is still the checkpoint's
    assert cfg.data.corpus.test_fraction == 0.1 and cfg.data.labels is None
    assert metrics["test/acc"] == train_metrics["test/acc"]
    assert metrics["test/loss"] == pytest.approx(train_metrics["test/loss"], abs=1e-6)


def test_data_switch_to_manifest_tests_the_same_clips(run, tmp_path):
    base, clips, best, train_metrics = run
    # the training run's own test manifest, read through data=manifest: the same clips and metrics
    manifests = (base / "cache" / "manifests").glob("folder-*/test.jsonl")
    (test_manifest,) = [m for m in manifests if f'"{clips}/' in m.read_text()]
    cfg, metrics = _eval(best, tmp_path / "eval", "data=manifest", f"data.test_manifest={test_manifest}")
    assert cfg.data._target_.endswith("AudioDataModule") and cfg.data.train_manifest is None
    assert metrics["test/acc"] == train_metrics["test/acc"]
    assert metrics["test/loss"] == pytest.approx(train_metrics["test/loss"], abs=1e-6)


def test_wrong_data_key_names_it_and_the_valid_keys(run, tmp_path):
    _, _, best, _ = run
    with pytest.raises(DataOverrideError) as e:
        checkpoint_data([f"ckpt_path={best}", "data.corpus.rooot=/x"])
    msg = str(e.value)
    assert msg.startswith("no key data.corpus.rooot in the data config of ckpt_path=") and "(Folder)" in msg
    assert ", override data.corpus.rooot=/x. Fix: valid keys of data.corpus: " in msg  # the one form
    valid = msg.split("valid keys of data.corpus: ")[1].split("; ")[0].split(", ")
    assert {"root", "test_fraction", "speaker_regex"} <= set(valid) and "_target_" not in valid
    with pytest.raises(DataOverrideError, match="valid keys of data: .*on_bad_audio"):
        checkpoint_data([f"ckpt_path={best}", "data.on_bad_audioo=skip"])
    # +data.x adds a key on purpose; Hydra-style flags are not overrides
    assert checkpoint_data(["-m", f"ckpt_path={best}", "+data.extra=1", "--cfg", "job"])["corpus"][
        "root"
    ].endswith("clips")
    # with data=<corpus>: checked against that corpus's config (its defaults list included)
    with pytest.raises(DataOverrideError) as e:
        checkpoint_data([f"ckpt_path={best}", "data=librilight", "data.corpus.librilite=1h"])
    assert str(e.value).startswith("no key data.corpus.librilite in conf/data/librilight.yaml")
    assert "librilight, " in str(e.value) and "train_subsets" in str(e.value)  # own key and librispeech's
    cfg = compose_train(
        [f"ckpt_path={best}", "data=fsdd", "data.corpus.test_speakers=[george]"], tmp_path, "eval"
    )
    assert cfg.data.corpus.test_speakers == ["george"] and cfg.data.corpus._target_.endswith("FSDD")


def test_data_overrides_with_a_ckpt_path_sweep_are_refused(run):
    _, _, best, _ = run
    with pytest.raises(DataOverrideError, match="several ckpt_path values"):
        checkpoint_data([f"ckpt_path={best},{best}", "data.corpus.root=/x"])
    assert checkpoint_data([f"ckpt_path={best},{best}"]) == {}  # each job: its own checkpoint's data


def test_predict_reads_audio_as_the_data_overrides_say(run, tmp_path):
    _, clips, best, _ = run
    inputs = shutil.copytree(clips / "test", tmp_path / "inputs")
    (inputs / "mid" / "broken.wav").write_bytes(b"")  # empty file
    n_good = len(list(inputs.rglob("*.wav"))) - 1

    def predict(*overrides):
        out = tmp_path / "pred"
        args = [f"ckpt_path={best}", f"inputs={inputs}", f"output={out / 'p.json'}", *overrides]
        path = run_predict(compose_train(args, out, "predict"))
        return json.loads(path.read_text()), out

    # the checkpoint's data.on_bad_audio=error: the one line names the file, where it was listed, and skip
    with pytest.raises(
        AudioError, match=r"^empty audio \(predict.py inputs\), .*broken.wav\. Fix: .*data.on_bad_audio=skip"
    ):
        predict()
    rows, out = predict("data.on_bad_audio=skip")
    assert len(rows) == n_good and all(not r["audio_filepath"].endswith("broken.wav") for r in rows)
    assert [json.loads(x)["reason"] for x in (out / "bad_audio.jsonl").read_text().splitlines()] == ["empty"]
    # every clip is >= 0.3 s: long_audio=skip with max_duration=0.2 leaves nothing to predict
    with pytest.raises(ValueError, match="every file was skipped"):
        predict("data.on_bad_audio=skip", "data.max_duration=0.2", "data.long_audio=skip")
