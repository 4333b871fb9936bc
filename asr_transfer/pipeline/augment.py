"""The ``augment`` config group, built: waveform augmentations for the data, SpecAugment for the task."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from asr_transfer.data.augment import WaveformAugment, WaveformAugmentation
from asr_transfer.data.augmented import AugmentedCopies
from asr_transfer.tasks.spec_augment import SpecAugment


def build_augment(cfg: DictConfig) -> tuple[WaveformAugment | None, SpecAugment | None]:
    """``augment.waveform.*`` (speed, noise, reverb, gain) as the training split's chain, and
    ``augment.specaugment`` for the task; None for what is not configured."""
    node = cfg.get("augment") or {}
    waveform = []
    for key, sub in (node.get("waveform") or {}).items():
        obj = instantiate(sub, _convert_="all")
        if not isinstance(obj, WaveformAugmentation):
            raise TypeError(f"augment.waveform.{key}: {type(obj).__name__} is not a WaveformAugmentation")
        waveform.append(obj)
    spec = instantiate(node.specaugment, _convert_="all") if node.get("specaugment") else None
    if spec is not None and not isinstance(spec, SpecAugment):
        raise TypeError(f"augment.specaugment: {type(spec).__name__} is not a SpecAugment")
    return (WaveformAugment(waveform) if waveform else None), spec


def augment_summary(datamodule, task, epochs: int) -> dict[str, float]:
    """What was augmented and how often: waveform draws replayed from their seeds over the epochs
    trained (or over the stored augmented copies, each drawn once), SpecAugment's running totals of
    masked frames and channels."""
    out: dict[str, float] = {}
    train = datamodule.datasets.get("train")
    source = getattr(train, "base", None)  # a stored split's source: AugmentedCopies when copies are stored
    aug = datamodule.augment
    if isinstance(source, AugmentedCopies):
        counts, draws = source.counts(), len(source)
        out["augment/stored_copies"] = float(source.copies)
    elif aug is not None and train is not None:
        counts, draws = aug.counts(datamodule.seed, epochs, len(train)), len(train) * epochs
    else:
        counts, draws = {}, 0
    for name, count in counts.items():
        out[f"augment/{name}/clips"] = float(count)
        out[f"augment/{name}/fraction"] = count / max(draws, 1)
    spec = task.spec_augment
    if spec is not None:
        out.update(spec.summary())
    return out
