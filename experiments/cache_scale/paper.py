"""On paper: disk size and encoding time of the features stage for SUPERB KS and LibriSpeech train-clean-100.

    python -m experiments.cache_scale.paper [--measure]

Disk: corpus audio seconds x 50 frames/s (all three encoders emit 50 frames per second) x hidden
states stored x hidden size x bytes (float16 frames, float32 pooled vectors, the stage's
defaults); pooled: one vector per stored layer per clip. Layer counts and sizes come from
building each architecture (random weights: the geometry and the compute are the weights'
own). Time (``--measure``): seconds of encoder forward per second of audio on this machine,
timed on random-weight models over batches shaped like each corpus (8 x 1 s; 2 x 12.7 s), then
scaled to the corpus. Writes paper.csv beside this script.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from asr_transfer.utils.atomic import write_csv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# (clips, audio seconds, batch shape for timing): SUPERB KS = Speech Commands v1.0, 12 classes
# (train 51,088 / dev 6,798 / test 3,081 clips of at most 1 s); LibriSpeech train-clean-100
# (28,539 utterances, 100.6 h).
CORPORA = {
    "SUPERB KS (Speech Commands v1, 12-class)": (60_967, 60_967 * 1.0, (8, 1.0)),
    "LibriSpeech train-clean-100": (28_539, 100.6 * 3600, (2, 12.7)),
}


def backbones():
    from asr_transfer.backbones.torchaudio import TorchaudioBackbone
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    whisper_base = ROOT / ".." / "shared" / "models" / "whisper-base"
    yield "wav2vec2-base", lambda: TorchaudioBackbone(variant="wav2vec2_base", pretrained=False)
    yield "WavLM-large", lambda: TorchaudioBackbone(variant="wavlm_large", pretrained=False)
    yield "Whisper-base", lambda: WhisperEncoderBackbone(name_or_path=str(whisper_base.resolve()))


@torch.inference_mode()
def seconds_per_audio_second(model, batch: int, seconds: float, repeats: int = 2) -> float:
    n = int(seconds * model.sample_rate)
    wavs, lengths = torch.randn(batch, n) * 0.1, torch.full((batch,), n)
    model.eval()
    model(wavs, lengths)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(wavs, lengths)
    return (time.perf_counter() - t0) / (repeats * batch * seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure", action="store_true", help="time each encoder on this machine")
    a = ap.parse_args()
    rows = []
    for name, build in backbones():
        model = build()
        layers, hidden = model.num_layers, model.hidden_size
        fps = model.sample_rate / model.downsample_rate
        for corpus, (clips, audio_s, (b, s)) in CORPORA.items():
            cost = seconds_per_audio_second(model, b, s) if a.measure else None
            rows.append(
                {
                    "backbone": name,
                    "corpus": corpus,
                    "hidden_states": layers,
                    "hidden_size": hidden,
                    "frames_all_layers_fp16_gb": round(audio_s * fps * layers * hidden * 2 / 1e9, 1),
                    "frames_one_layer_fp16_gb": round(audio_s * fps * hidden * 2 / 1e9, 1),
                    "pooled_all_layers_fp32_gb": round(clips * layers * hidden * 4 / 1e9, 2),
                    "encode_s_per_audio_s": None if cost is None else round(cost, 4),
                    "encode_hours_this_machine": None if cost is None else round(cost * audio_s / 3600, 1),
                    "threads": torch.get_num_threads(),
                    "load_1_5_15": " ".join(f"{x:.1f}" for x in os.getloadavg()),
                }
            )
            print(rows[-1], flush=True)
        del model
    write_csv(HERE / "paper.csv", rows)


if __name__ == "__main__":
    main()
