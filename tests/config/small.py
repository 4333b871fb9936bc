"""Composing any config option small enough to build in a test: tiny random backbones
(``tests.presets.TINY_OVERRIDES``), generated data laid out like each real corpus (``DATA``), and the
options a recognition choice needs. Options are found by walking conf/, so a new YAML file is
covered without editing the tests; a new corpus class needs an entry in ``DATA``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import get_class, instantiate

from asr_transfer.pipeline.build import build_backbone, task_class
from asr_transfer.pipeline.train import callbacks_for, loggers_for
from tests.conftest import CONF, WHISPER_DIR, audio_datamodule, compose_train, task_for
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
            "data.corpus.eval_per_speaker=4",  # verification: 2 strings of each unseen speaker per split
            "data.corpus.max_digits=4",  # digit counts vary within each split (regression correlations)
        ],
        "text",
    ),
    "Tones": (lambda a: [], None),
    "Folder": (lambda a: [f"data.corpus.root={a['folder']}", "data.corpus.speaker_regex=null"], "label"),
    "SpeechCommands": (lambda a: [f"data.corpus.root={a['speech_commands']}"], "label"),
    "HFDataset": (lambda a: [f"data.corpus.path={a['hf']}", "data.corpus.speaker_column=speaker"], "label"),
    "LhotseCorpus": (
        lambda a: [
            *(f"data.corpus.{s}={a['lhotse'][s]}" for s in ("train", "val", "test")),
            "data.corpus.label_field=label",
        ],
        None,
    ),
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
PULLED_IN_BY = {"decoding": ["task=ctc"], "decoder_adapter": ["task=seq2seq"]}


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


# Tasks whose targets the generated manifests carry (tags, a real target, segments, speakers) and
# whose YAML picks the head they need: composed as they are, not as recognition.
OWN_TARGETS = {"TaggingTask", "RegressionTask", "VerificationTask", "FramesTask"}


def is_recognition(cfg) -> bool:
    classification = get_class("asr_transfer.tasks.classification.ClassificationTask")
    if cls_name(cfg.task._target_) in OWN_TARGETS:
        return False
    return (
        not issubclass(get_class(cfg.task._target_), classification)
        or get_class(cfg.head._target_).output in ("frames", "tokens")
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
        # Whisper's own decoder (task=seq2seq) is its head: that task, never a frame head
        seq2seq = (
            cls_name(cfg.task._target_) == "Seq2SeqTask" or get_class(cfg.head._target_).output == "tokens"
        )
        if group != "task" and cls_name(cfg.task._target_) == "ClassificationTask":
            needs.append("task=seq2seq" if seq2seq else f"task={RECOGNITION['task']}")
        if group != "head" and not seq2seq and get_class(cfg.head._target_).output != "frames":
            needs.append(f"head={RECOGNITION['head']}")
        if group != "data" and data_target(cfg) == "label":
            needs.append(f"data={RECOGNITION['data']}")
        base = [base[0], *needs, *base[1:]]
        cfg = compose_train(base, tmp_path / "run")
    if cls_name(cfg.task._target_) in OWN_TARGETS and group not in ("data", "experiment"):
        base = [base[0], "data=manifest", *base[1:]]  # the generated manifests carry their targets
        cfg = compose_train(base, tmp_path / "run")
    if cls_name(cfg.task._target_) == "Seq2SeqTask" and not WHISPER_DIR.is_dir():
        pytest.skip("task=seq2seq reads Whisper's tokenizer from ../shared/models/whisper-tiny.en (absent)")
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
    datamodule = audio_datamodule(cfg, backbone)
    datamodule.prepare_data()
    datamodule.setup("fit")
    task = task_for(cfg, backbone, **task_class(cfg).data_kwargs(datamodule))
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
