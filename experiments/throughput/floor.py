"""Job C, the floor: one bare forward of the Whisper encoder over every clip, as a whole process.

No training, no Lightning, no cache: decode (soundfile), resample (torchaudio), sort by length,
batch, and run ``WhisperEncoderBackbone`` on the real clip lengths (``--min-window-s 0``, no silence
window: stricter than the probe, which encodes sub-second clips in a 1 s window) under ``inference_mode``.
A frozen probe has to do at least this much once, so its end-to-end time can only approach it.

    python -m experiments.throughput.floor --recordings ../shared/data/fsdd/recordings \
        --model ../shared/models/whisper-tiny.en --out /tmp/floor.json
"""

import time

T0 = time.perf_counter()  # first thing: the in-process wall time counts the imports below

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from step_clock import write_json  # noqa: E402

from asr_transfer.backbones.whisper import WhisperEncoderBackbone  # noqa: E402
from asr_transfer.data.audio import load_audio  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recordings", type=Path, required=True, help="folder of FSDD wavs")
    p.add_argument("--model", required=True, help="local Whisper folder or hub id")
    p.add_argument("--speakers", default="george,jackson,nicolas,yweweler")
    p.add_argument("--batch-size", type=int, default=64, help="clips per batch (the datamodule's eval batch)")
    p.add_argument(
        "--min-window-s",
        type=float,
        default=0.0,
        help="0: the bare clips at their real lengths (the issue's floor); 1.0: the probe's default window",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    speakers = set(args.speakers.split(","))
    files = [f for f in sorted(args.recordings.glob("*_*_*.wav")) if f.stem.split("_")[1] in speakers]
    if not files:
        sys.exit(f"--recordings {args.recordings}: no clips by speakers {sorted(speakers)}")
    t = time.perf_counter()
    backbone = WhisperEncoderBackbone(args.model, freeze="all", min_window_s=args.min_window_s).eval()
    load_s = time.perf_counter() - t

    t = time.perf_counter()
    wavs = sorted((load_audio(str(f), backbone.sample_rate) for f in files), key=len)
    decode_s = time.perf_counter() - t

    t = time.perf_counter()
    frames = 0
    with torch.inference_mode():
        for i in range(0, len(wavs), args.batch_size):
            chunk = wavs[i : i + args.batch_size]
            lengths = torch.tensor([len(w) for w in chunk])
            batch = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)  # (B, S), zero padded
            hidden, frame_lengths = backbone(batch, lengths)  # num_layers x (B, T, D), (B,)
            frames += int(frame_lengths.sum())
    forward_s = time.perf_counter() - t

    out = {
        "clips": len(wavs),
        "audio_s": sum(len(w) for w in wavs) / backbone.sample_rate,
        "frames": frames,
        "model_load_s": load_s,
        "decode_s": decode_s,
        "forward_s": forward_s,
        "inproc_wall_s": time.perf_counter() - T0,
    }
    write_json(args.out, out)
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()})


if __name__ == "__main__":
    main()
