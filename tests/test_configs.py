"""Every config option composes and instantiates; every ``experiment=`` preset runs with
``trainer.fast_dev_run=true``; wrong options and keys fail with messages naming them; ``--cfg job`` prints.

Options are found by walking conf/, so a new YAML file is covered without editing this test. Pretrained
weights cannot be downloaded here: each backbone class gets tiny random-weight overrides (``tests.presets.TINY_OVERRIDES``),
and each datamodule class gets small generated data laid out like the real corpus (``data_overrides``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class, instantiate

from asr_transfer.pipeline.build import build_backbone, build_datamodule, build_task, task_class
from asr_transfer.pipeline.train import callbacks_for, loggers_for, train
from tests.conftest import CONF, ROOT, compose_train, write_tone_corpus
from tests.fakes import fake_folder, fake_fsdd, fake_librispeech, fake_speech_commands
from tests.presets import TINY_OVERRIDES

# Groups whose option picks the class of one built object: the test checks that class.
BUILT = {
    "backbone": lambda p: p["backbone"],
    "data": lambda p: p["datamodule"],
    "task": lambda p: p["task"],
    "featurizer": lambda p: p["task"].featurizer,
    "head": lambda p: p["task"].head,
    "optimizer": lambda p: p["optimizer"],
}


def options() -> list[tuple[str, str]]:
    """(group, option) for every YAML under conf/<group>/ (nested groups as ``a/b``)."""
    found = []
    for group_dir in sorted(p for p in CONF.iterdir() if p.is_dir()):
        for f in sorted(group_dir.rglob("*.yaml")):
            rel = f.relative_to(CONF).with_suffix("")
            found.append((str(rel.parent), rel.name))
    return found


def cls_name(target: str | None) -> str | None:
    return None if not target else str(target).rsplit(".", 1)[-1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Generated stand-ins for each corpus layout (shared by every test in this module)."""
    root = tmp_path_factory.mktemp("assets")
    return {
        "tones": write_tone_corpus(root / "tones", per_class=3),
        "fsdd": fake_fsdd(root / "fsdd", per_digit=1),
        "folder": fake_folder(root / "folder"),
        "speech_commands": fake_speech_commands(root / "sc", per_word=3, noise_seconds=3.0),
        "librispeech": _librispeech(root / "ls"),
    }


def _librispeech(root: Path) -> Path:
    fake_librispeech(root)
    return root


# Generated data for each corpus class (a new class must be added here), and the target field its rows
# have (None: both label and text).
DATA = {
    "manifests": (
        lambda a: [f"data.{s}_manifest={a['tones'][s]}" for s in ("train", "val", "test")],
        None,
    ),
    "FSDD": (
        lambda a: [
            f"data.corpus.root={a['fsdd']}",
            "data.corpus.val_speakers=[nicolas]",
            "data.corpus.test_speakers=[yweweler]",
        ],
        "label",
    ),
    "FSDDDigits": (
        lambda a: [
            f"data.corpus.root={a['fsdd']}",
            "data.corpus.val_speakers=[nicolas]",
            "data.corpus.test_speakers=[yweweler]",
            "data.corpus.train_per_speaker=4",
            "data.corpus.eval_per_speaker=2",
            "data.corpus.max_digits=3",
        ],
        "text",
    ),
    "Tones": (lambda a: [], None),
    "Folder": (lambda a: [f"data.corpus.root={a['folder']}", "data.corpus.speaker_regex=null"], "label"),
    "SpeechCommands": (lambda a: [f"data.corpus.root={a['speech_commands']}"], "label"),
    "LibriSpeech": (
        lambda a: [
            f"data.corpus.root={a['librispeech']}",
            "data.corpus.download=false",
            "data.corpus.train_subsets=[dev-clean]",
            "data.corpus.val_subsets=[dev-clean]",
            "data.corpus.test_subsets=[test-clean]",
        ],
        "text",
    ),
}
# Recognition options only work together: a CTC task, a frame head and data with text.
RECOGNITION = {"task": "ctc", "head": "ctc_linear", "data": "manifest"}
# Groups outside train.yaml's defaults list, and the option that pulls each in.
PULLED_IN_BY = {"decoding": ["task=ctc"]}


def data_entry(cfg) -> tuple:
    corpus = cfg.data.get("corpus")
    name = cls_name(corpus._target_) if corpus else "manifests"
    if name not in DATA:
        pytest.fail(
            f"no generated data for data.corpus._target_={corpus._target_}: add it to DATA in {__file__}"
        )
    return DATA[name]


def data_target(cfg) -> str | None:
    return data_entry(cfg)[1]


def is_recognition(cfg) -> bool:
    classification = get_class("asr_transfer.tasks.classification.ClassificationTask")
    return (
        not issubclass(get_class(cfg.task._target_), classification)
        or get_class(cfg.head._target_).output == "frames"
        or "decoding" in cfg
        or data_target(cfg) == "text"
    )


def compose_small(choice: str, tmp_path: Path, assets: dict, extra: tuple = (), cpu: bool = True):
    """Compose ``choice`` (``group=option``) like the CLI, completed by the choices it needs, then with a
    tiny backbone, generated data and the run dir in tmp_path. The option under test always wins."""
    group = choice.split("=", 1)[0]
    base = [f"paths.cache_dir={tmp_path / 'cache'}", *PULLED_IN_BY.get(group, []), choice, *extra]
    cfg = compose_train(base, tmp_path / "run")
    if is_recognition(cfg) and group != "experiment":
        needs = []
        if group != "task" and cls_name(cfg.task._target_) == "ClassificationTask":
            needs.append(f"task={RECOGNITION['task']}")
        if group != "head" and get_class(cfg.head._target_).output != "frames":
            needs.append(f"head={RECOGNITION['head']}")
        if group != "data" and data_target(cfg) == "label":
            needs.append(f"data={RECOGNITION['data']}")
        base = [base[0], *needs, *base[1:]]
        cfg = compose_train(base, tmp_path / "run")
    small = [*TINY_OVERRIDES.get(cls_name(cfg.backbone._target_), []), *data_entry(cfg)[0](assets)]
    if (cfg.get("callbacks") or {}).get("progress_bar") is not None:
        small.append("callbacks.progress_bar=null")  # no Rich live display in test logs
    small.append("trainer.enable_progress_bar=false")
    if cpu:
        small.append("trainer.accelerator=cpu")
    return compose_train([*base, *small], tmp_path / "run")


def augment_folders(option: str, tmp_path: Path) -> tuple:
    """Generated noise / RIR folders for the augment options that read one."""
    from asr_transfer.data.noise import write_coloured, write_rirs

    if option == "noise":
        write_coloured(tmp_path / "noise", seconds=0.5, sample_rate=16000, per_colour=1)
        return (f"augment.noise_dir={tmp_path / 'noise'}",)
    if option == "reverb":
        write_rirs(tmp_path / "rirs", 16000)
        return (f"augment.rir_dir={tmp_path / 'rirs'}",)
    return ()


def build_all(cfg) -> dict:
    """Every object a training run builds, short of fitting."""
    backbone = build_backbone(cfg)
    datamodule = build_datamodule(cfg, backbone)
    datamodule.prepare_data()
    datamodule.setup("fit")
    task = build_task(cfg, backbone, **task_class(cfg).data_kwargs(datamodule))
    optimizer = task.optimizer_factory(task.param_groups())
    scheduler = task.scheduler_factory(optimizer, total_steps=10) if task.scheduler_factory else None
    callbacks, loggers = callbacks_for(cfg, has_val=True), loggers_for(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return dict(
        backbone=backbone,
        datamodule=datamodule,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        callbacks=callbacks,
        loggers=loggers,
        trainer=trainer,
    )


# ----- (1) every option of every group composes and instantiates --------------------------------------
@pytest.mark.parametrize(("group", "option"), options(), ids=[f"{g}={o}" for g, o in options()])
def test_every_option_composes_and_instantiates(group, option, tmp_path, assets, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # a W&B logger must never reach the network in tests
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    if group == "hydra":
        pytest.skip("hydra/ configures Hydra itself (run dirs, logging): composed by every other case")
    on_trainer = group == "trainer"
    extra = augment_folders(option, tmp_path) if group == "augment" else ()
    cfg = compose_small(f"{group}={option}", tmp_path, assets, extra, cpu=not on_trainer)
    accel = str(cfg.trainer.get("accelerator", "auto"))
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        # still proves it composes; the Trainer itself refuses a GPU setting without a GPU
        pytest.skip(f"{group}={option} sets trainer.accelerator={accel}: needs a CUDA device")
    parts = build_all(cfg)

    if group in BUILT:
        node = cfg[group.split("/")[0]]
        assert type(BUILT[group](parts)).__name__ == cls_name(node._target_), f"{group}={option}"
    if group == "data":
        dm = parts["datamodule"]
        assert {"train", "val", "test"} <= set(dm.datasets)
        field = dm.targets.field
        assert field == (data_target(cfg) or field) and (field == "text" or dm.num_classes >= 2)
        batch = next(iter(dm.train_dataloader()))
        targets = batch["labels"] if field == "label" else batch["text"]
        assert batch["wavs"].shape[0] == batch["lengths"].shape[0] == len(targets)
    if group == "augment":  # waveform options reach the training data, SpecAugment the task
        waveform = parts["datamodule"].augment
        assert (waveform.names if waveform else ["specaugment"]) == [option]
        assert (parts["task"].spec_augment is not None) == (option == "specaugment")
    if group == "scheduler":
        assert parts["scheduler"]["scheduler"].optimizer is parts["optimizer"]
    if group == "optimizer":
        # defaults, not param_groups: a warmup scheduler has already rescaled those
        assert parts["optimizer"].defaults["lr"] == pytest.approx(cfg.optimizer.lr)
    if group == "callbacks":
        assert len(parts["callbacks"]) == sum(1 for c in (cfg.callbacks or {}).values() if c)
    if group == "logger":
        assert len(parts["loggers"]) == sum(1 for c in (cfg.logger or {}).values() if c)
    if group == "backbone":  # sizes flow from the backbone, never retyped
        bb = parts["backbone"]
        assert bb.num_layers >= 2 and bb.sample_rate == parts["datamodule"].sample_rate


# ----- (2) every experiment preset runs end to end ------------------------------------------------------
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(experiment, tmp_path, assets, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_small(f"experiment={experiment}", tmp_path, assets, extra=("++trainer.fast_dev_run=true",))
    result = train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert tested and all(math.isfinite(v) for v in tested.values()), metrics
    assert result is None or math.isfinite(result)


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
    out = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--cfg",
            "job",
            "head=mlp",
            "data=folder",
            "data.corpus.root=/some/clips",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "backbone:" in text and "_target_: asr_transfer.backbones.whisper.WhisperEncoderBackbone" in text
    assert "_target_: asr_transfer.heads.utterance.MLPHead" in text
    assert "_target_: asr_transfer.data.corpora.folder.Folder" in text and "root: /some/clips" in text
