"""One LightningDataModule for every corpus: manifests in, padded batches at the backbone's rate out."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from asr_transfer.data.augment import WaveformAugment
from asr_transfer.data.augmented import AugmentedDataset, EpochBatches
from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.checks import ClipRules
from asr_transfer.data.corpora.base import Corpus
from asr_transfer.data.dataset import AudioDataset, BadAudioLog
from asr_transfer.data.manifest import Entry, read_manifest
from asr_transfer.data.targets import LabelTargets, Targets

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class AudioDataModule(L.LightningDataModule):
    """Reads per-split manifests (given, or written by ``corpus.prepare()``), checks every file's
    header before training (``data/checks.py``), and serves length-bucketed, padded batches.

    ``corpus``: a ``Corpus`` (conf/data/<corpus>.yaml's ``corpus:`` node) that finds or downloads the
    audio and writes the manifests; None: ``train_manifest``/``val_manifest``/``test_manifest``.
    ``targets``: what the task learns from each row (the pipeline passes the task's
    ``make_targets()``; default: class labels). ``labels``: a fixed label order (default: the
    corpus's, else the training split's, sorted).
    ``max_per_class`` with ``subset_seed``: keep that many random training clips per target value
    (label-scarcity studies).
    ``on_bad_audio``, ``max_duration``, ``long_audio``, ``min_samples``: see ``ClipRules``; the
    pipeline passes the backbone's ``sample_rate`` and ``min_samples`` (0 here: no minimum).
    ``store``: ``{split: audio dataset} -> {split: dataset}`` for the splits whose stored features
    this run reads (the pipeline's features store; None: every split is served as audio). ``setup``
    calls it once, after reading and checking the manifests, and serves what it returns in their place.
    ``augment``: waveform augmentation of the training split only (``augment=`` config group),
    applied where clips are decoded (in the DataLoader workers when ``num_workers > 0``).
    """

    def __init__(
        self,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        corpus: Corpus | None = None,
        sample_rate: int = 16000,
        batch_size: int | None = 16,
        eval_batch_size: int | None = None,
        max_batch_seconds: float | None = None,
        bucket: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        on_bad_audio: str = "error",
        max_duration: float | None = None,
        long_audio: str = "crop",
        labels: list[str] | None = None,
        seed: int = 0,
        run_dir: str | None = None,
        min_samples: int = 0,
        targets: Targets | None = None,
        max_per_class: int | None = None,
        subset_seed: int = 0,
        store: Callable[[dict[str, Dataset]], dict[str, Dataset]] | None = None,
        augment: WaveformAugment | None = None,
    ) -> None:
        super().__init__()
        self.manifest_paths = {"train": train_manifest, "val": val_manifest, "test": test_manifest}
        self.corpus, self.sample_rate = corpus, sample_rate
        self.targets = targets if targets is not None else LabelTargets()
        self.rules = ClipRules(
            sample_rate, min_samples, max_duration, long_audio, on_bad_audio, self.targets.crop_ok
        )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.max_batch_seconds, self.bucket = max_batch_seconds, bucket
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers
        self.store = store
        self.seed, self.max_per_class, self.subset_seed = seed, max_per_class, subset_seed
        self.fixed_labels = list(labels) if labels else (corpus.labels() if corpus is not None else None)
        self.augment = augment
        self._resume: dict | None = None  # train sampler position from a checkpoint (see load_state_dict)
        self.bad_log = BadAudioLog(None if run_dir is None else Path(run_dir) / "bad_audio.jsonl")
        self.collate = functools.partial(pad_batch, targets=self.targets)
        self.datasets: dict[str, Dataset] = {}
        self.entries: dict[str, list[Entry]] = {}
        self._ready = False
        self._reported: set[str] = set()

    # ----- preparation ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.corpus is not None:
            self.corpus.prepare()

    def manifests(self) -> dict[str, str | None]:
        if self.corpus is not None:
            return self.corpus.prepare()  # idempotent: returns existing manifests without rewriting
        return self.manifest_paths

    def read(self, split: str, path: str, on_error=None) -> list[Entry]:
        """One split's manifest rows as the run reads them (required fields, the training subset)."""
        field = self.targets.field if self.targets.required else ""
        required = ("audio_filepath", field) if field else ("audio_filepath",)
        entries = read_manifest(path, required, on_error)
        if split == "train" and self.max_per_class:
            entries = limit_per_class(entries, self.targets.field, self.max_per_class, self.subset_seed)
        return entries

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        paths = self.manifests()
        if not paths.get("train") and not paths.get("test"):
            raise ValueError(
                "no data: set data.train_manifest (and val/test), or a data=<corpus> config (data.corpus)"
            )
        for split in SPLITS:
            if paths.get(split):
                self.entries[split] = self.rules.keep(self.read(split, paths[split]), split, self.bad_log)
        self.fit_targets()
        for split, entries in self.entries.items():
            if not entries:
                raise ValueError(
                    f"every file of the {split} split ({paths[split]}) was skipped: see {self.bad_log.path}"
                )
            self.datasets[split] = AudioDataset(entries, split, self.rules, self.bad_log, self.targets)
            short = sum(e.duration * self.sample_rate < self.rules.min_samples for e in entries)
            if short:  # said once, here, not once per clip
                log.warning(
                    "%s: %d clip(s) shorter than %d samples (%.0f ms) are zero-padded to that minimum",
                    split,
                    short,
                    self.rules.min_samples,
                    1000 * self.rules.min_samples / self.sample_rate,
                )
        bad = self.bad_log.summary()
        if bad:
            log.warning(
                "skipped %d file(s) at header check %s: see %s",
                sum(bad.values()),
                dict(bad),
                self.bad_log.path,
            )
        self._ready = True
        log.info("data: %s", ", ".join(f"{s}={len(e)}" for s, e in self.entries.items()))
        if self.store is not None:
            stored = self.store(dict(self.datasets))
            self.datasets.update(stored)
            self.entries.update({split: ds.entries for split, ds in stored.items()})
            if stored:
                log.info(
                    "data: %s (stored features)", ", ".join(f"{s}={len(ds)}" for s, ds in stored.items())
                )

    def fit_targets(self) -> None:
        """Fit the targets on every split; rows they reject stop the run, or under ``on_bad_audio=skip``
        (for targets that allow it) are left out and logged like bad audio."""
        faults = self.targets.fit(self.entries, self.fixed_labels)
        for note in self.targets.notes()[:1]:  # said once, with the count (check_data.py lists them all)
            log.warning("%d row(s) changed to fit the task, e.g. %s", len(self.targets.notes()), note)
        if not faults:
            return
        if not self.targets.skips(self.rules.on_bad_audio):
            raise faults[0]
        bad = {(f.path, f.line): f for f in faults}
        for split, rows in self.entries.items():
            for e in rows:
                if (e.manifest, e.line) in bad:
                    self.bad_log.add(
                        e, split, TargetFault(self.targets.fault_reason, str(bad[e.manifest, e.line]))
                    )
            self.entries[split] = [e for e in rows if (e.manifest, e.line) not in bad]
        faults = self.targets.fit(self.entries, self.fixed_labels)  # what remains fits cleanly
        if faults:
            raise faults[0]

    # ----- properties the task reads ------------------------------------------------------------
    @property
    def labels(self) -> list[str] | None:
        """The label set, when the targets have one (class labels)."""
        return getattr(self.targets, "labels", None)

    # ----- loaders --------------------------------------------------------------------------------
    def sampler(self, split: str) -> LengthBatchSampler:
        ds = self.datasets[split]
        train = split == "train"
        sampler = LengthBatchSampler(
            ds.durations,
            batch_size=self.batch_size if train else self.eval_batch_size,
            max_batch_seconds=self.max_batch_seconds,
            shuffle=train,
            bucket=self.bucket,
            seed=self.seed,
        )
        if train and self._resume is not None:
            # Continue where the checkpoint left off: the same epoch order, minus the batches done.
            epoch, done = self._resume["epoch"], self._resume["batches_done"]
            if done >= len(sampler):
                epoch, done = epoch + 1, 0
            sampler.set_epoch(epoch)
            sampler.skip_batches(done)
            self._resume = None
        if split not in self._reported and isinstance(ds, AudioDataset):
            self._reported.add(split)  # padding costs compute only when audio reaches the backbone
            log.info(
                "%s: %d batches, padding %.1f%% of the audio batch",
                split,
                len(sampler),
                100 * sampler.padding_fraction(),
            )
        return sampler

    def loader(self, split: str) -> DataLoader:
        workers = self.num_workers
        dataset, batches = self.datasets[split], self.sampler(split)
        if split == "train" and self.augment is not None:
            if not isinstance(dataset, AudioDataset):
                raise RuntimeError("waveform augmentation needs audio, but the training split is cached")
            dataset, batches = AugmentedDataset(dataset, self.augment, self.seed), EpochBatches(batches)
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            # Its own generator: creating an iterator then draws no global random numbers, so a
            # resumed run's dropout/augmentation stream matches the uninterrupted run's.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")

    def state_dict(self) -> dict:
        """Labels, and during fit the training position (epoch, batches done) so a resumed run
        continues mid-epoch with exactly the batches an uninterrupted run would see."""
        state: dict = {"labels": self.labels}
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn == "fit":  # also when saved during validation
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            state["train_position"] = {"epoch": trainer.current_epoch, "batches_done": progress.ready}
        return state

    def load_state_dict(self, state: dict) -> None:
        self._resume = state.get("train_position")
        if state.get("labels") and self.labels and list(state["labels"]) != list(self.labels):
            raise ValueError(
                f"checkpoint labels {state['labels']} differ from this data's labels {self.labels}"
            )


class TargetFault(NamedTuple):
    """A row whose target the task cannot use, as ``BadAudioLog`` records it."""

    reason: str
    detail: str


def limit_per_class(entries: list[Entry], field: str, k: int, seed: int) -> list[Entry]:
    """Keep ``k`` random entries per value of ``field`` (the labelled-data-scarcity setting)."""
    if not field:
        raise ValueError("data.max_per_class needs targets with classes (a task that reads a field)")
    rng = random.Random(seed)
    by_value: dict[str, list[Entry]] = {}
    for e in entries:
        by_value.setdefault(str(e.get(field)), []).append(e)
    kept = []
    for value in sorted(by_value):
        group = by_value[value][:]
        rng.shuffle(group)
        kept += group[:k]
    return kept
