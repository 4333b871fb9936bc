"""One LightningDataModule for every corpus: manifests in, padded batches at the backbone's rate out."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from asr_transfer.data.audio import AudioError, check_header
from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.cached_dataset import CachedFeatureDataset
from asr_transfer.data.dataset import AudioDataset, BadAudioLog, natural_key
from asr_transfer.data.manifest import Entry, ManifestError, read_manifest

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class AudioDataModule(L.LightningDataModule):
    """Reads per-split manifests (given, or written by ``corpus.prepare()``), checks every file's
    header before training, and serves length-bucketed, padded batches.

    ``target``: "label" (classification: builds the label set from the training split) or "text" (CTC).
    ``on_bad_audio``: "error" stops with the file, split, manifest line and reason; "skip" drops
    the file and lists it in ``<run dir>/bad_audio.jsonl``.
    ``max_duration`` (s) with ``long_audio``: "crop" keeps the first ``max_duration`` seconds (only
    that stretch is decoded), "skip" drops the file (listed as ``too_long``).
    ``min_samples``: clips shorter than this (at the backbone's rate) are zero-padded to it; the
    pipeline passes the backbone's ``min_samples`` (default 400: wav2vec2's CNN receptive field,
    Whisper's STFT needs more than 200).
    """

    def __init__(
        self,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        corpus=None,
        sample_rate: int = 16000,
        target: str = "label",
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
        cache_dir: str = ".cache/features",
        cache_dtype: str = "float32",
        seed: int = 0,
        run_dir: str | None = None,
        min_samples: int = 400,
    ) -> None:
        super().__init__()
        if on_bad_audio not in ("error", "skip"):
            raise ValueError(f"data.on_bad_audio={on_bad_audio!r}: use 'error' or 'skip'")
        if long_audio not in ("crop", "skip"):
            raise ValueError(f"data.long_audio={long_audio!r}: use 'crop' or 'skip'")
        if target not in ("label", "text"):
            raise ValueError(f"data.target={target!r}: use 'label' (classification) or 'text' (CTC)")
        self.manifest_paths = {"train": train_manifest, "val": val_manifest, "test": test_manifest}
        self.corpus, self.sample_rate, self.target = corpus, sample_rate, target
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.max_batch_seconds, self.bucket = max_batch_seconds, bucket
        self.num_workers, self.pin_memory, self.persistent_workers = (
            num_workers,
            pin_memory,
            persistent_workers,
        )
        self.on_bad_audio, self.max_duration, self.long_audio = on_bad_audio, max_duration, long_audio
        self.cache_dir, self.cache_dtype = cache_dir, cache_dtype
        self.seed, self.min_samples = seed, min_samples
        self._resume: dict | None = None  # train sampler position from a checkpoint (see load_state_dict)
        self.bad_log = BadAudioLog(None if run_dir is None else Path(run_dir) / "bad_audio.jsonl")
        self.labels: list[str] | None = list(labels) if labels else None
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

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        paths = self.manifests()
        if not paths.get("train") and not paths.get("test"):
            raise ValueError("no data: set data.train_manifest (and val/test), or a data=<corpus> config")
        required = ("audio_filepath", self.target)
        for split in SPLITS:
            if paths.get(split):
                self.entries[split] = self._check(read_manifest(paths[split], required), split)
        if self.target == "label":
            self._build_labels()
        max_samples = None if self.max_duration is None else int(self.max_duration * self.sample_rate)
        index = None if self.labels is None else {lab: i for i, lab in enumerate(self.labels)}
        for split, entries in self.entries.items():
            if not entries:
                raise ValueError(
                    f"every file of the {split} split ({paths[split]}) was skipped: see {self.bad_log.path}"
                )
            self.datasets[split] = AudioDataset(
                entries,
                split,
                self.sample_rate,
                index,
                max_samples,
                self.on_bad_audio,
                self.bad_log,
                self.min_samples,
            )
            short = sum(e.duration * self.sample_rate < self.min_samples for e in entries)
            if short:  # said once, here, not once per clip
                log.warning(
                    "%s: %d clip(s) shorter than %d samples (%.0f ms) are zero-padded to that minimum",
                    split,
                    short,
                    self.min_samples,
                    1000 * self.min_samples / self.sample_rate,
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

    def _check(self, entries: list[Entry], split: str) -> list[Entry]:
        """Header-check every file now (no decode), so a bad file at the end of a list fails in seconds."""
        kept = []
        for e in entries:
            try:
                info = check_header(e.audio_filepath)
            except AudioError as err:
                if self.on_bad_audio == "skip":
                    self.bad_log.add(e, split, err)
                    continue
                raise AudioError(
                    err.path,
                    err.reason,
                    f"{split} split, {e.manifest} line {e.line}" + (f"; {err.detail}" if err.detail else ""),
                ) from None
            if e.duration is None:
                e.duration = info.duration - e.offset
            if self.max_duration is not None and e.duration > self.max_duration:
                # A crop would cut the audio but not its transcript: text targets are skipped instead.
                if self.long_audio == "skip" or self.target == "text":
                    self.bad_log.add(
                        e,
                        split,
                        AudioError(
                            e.audio_filepath,
                            "too_long",
                            f"{e.duration:.1f} s > data.max_duration={self.max_duration}",
                        ),
                    )
                    continue
                e.duration = float(self.max_duration)
            kept.append(e)
        return kept

    def _build_labels(self) -> None:
        if self.labels is None:
            train = self.entries.get("train")
            if not train:
                raise ValueError("no training split to build the label set from: set data.labels explicitly")
            self.labels = sorted({e.label for e in train}, key=natural_key)
        known = set(self.labels)
        for split, entries in self.entries.items():
            for e in entries:
                if e.label not in known:
                    raise ManifestError(
                        e.manifest,
                        e.line,
                        f"label {e.label!r} in the {split} split never occurs "
                        f"in training (known: {self.labels[:20]}); add training examples or drop it",
                        "label",
                    )

    # ----- properties the task reads ------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise RuntimeError("call setup() before reading num_classes")
        return len(self.labels)

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
        if split not in self._reported and not isinstance(ds, CachedFeatureDataset):
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
        return DataLoader(
            self.datasets[split],
            batch_sampler=self.sampler(split),
            collate_fn=pad_batch,
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
