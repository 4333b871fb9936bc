"""How tests/data/features_reference.json was made: logits through the OLD FeatureCache path (commit b41db4a, before the features stage replaced it), on a deterministic corpus. Kept for provenance; it does not run on later commits."""

import json
import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, ".")
from asr_transfer.data.cache import FeatureCache

from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.featurizers import WeightedSum
from asr_transfer.heads import AttentiveHead, LinearHead
from asr_transfer.tasks.classification import ClassificationTask
from tests.conftest import TINY_WHISPER_CONFIG


def corpus(root: Path):
    out = {}
    for s, split in enumerate(("train", "val", "test")):
        rows = []
        for c, f in enumerate((300.0, 800.0, 1800.0)):
            for k in range(4):
                rng = np.random.default_rng(100 * s + 10 * c + k)
                dur, sr = 0.3 + 0.1 * (k % 3), (8000 if k % 2 else 16000)
                t = np.arange(int(dur * sr)) / sr
                x = (
                    0.5 * np.sin(2 * math.pi * f * (1 + 0.02 * k) * t) + 0.05 * rng.standard_normal(t.shape)
                ).astype(np.float32)
                p = root / "audio" / f"{split}_{c}_{k}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), x, sr, subtype="PCM_16")
                rows.append({"audio_filepath": str(p), "duration": dur, "label": str(c)})
        m = root / f"{split}.jsonl"
        m.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[split] = m
    return out


root = Path("/tmp/refcorpus")
c = corpus(root)
ref = {}
for name, head in (("pooled", LinearHead), ("frames", AttentiveHead)):
    dm = AudioDataModule(
        str(c["train"]),
        str(c["val"]),
        str(c["test"]),
        cache_dir=str(root / f"cache-{name}"),
        eval_batch_size=64,
    )
    dm.setup("fit")
    torch.manual_seed(0)
    bb = WhisperEncoderBackbone(pretrained=False, config_overrides=TINY_WHISPER_CONFIG, min_window_s=0.5)
    torch.manual_seed(1)
    task = ClassificationTask(
        bb,
        partial(WeightedSum),
        partial(head),
        partial(torch.optim.AdamW),
        num_classes=3,
        labels=["0", "1", "2"],
    )
    task.eval()
    with torch.no_grad():
        task.featurizer.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    FeatureCache(root / f"cache-{name}", dtype="float32").attach(dm, task)
    batch = next(iter(dm.loader("test")))
    with torch.no_grad():
        logits = task(batch)
    files = [Path(dm.datasets["test"].base.entries[i].audio_filepath).name for i in batch["index"].tolist()]
    ref[name] = {f: row.tolist() for f, row in zip(files, logits)}
Path("tests/data/features_reference.json").write_text(json.dumps(ref, indent=1))
print({k: len(v) for k, v in ref.items()})
