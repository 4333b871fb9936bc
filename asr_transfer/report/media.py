"""Images and audio as data URIs, so the report is one file that opens offline."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import soundfile as sf
from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def figure_uri(fig: Figure, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def read_audio(path: str, max_seconds: float = 30.0) -> tuple[np.ndarray, int] | None:
    """The clip's first ``max_seconds`` as mono float32 (samples,) and its rate; None when unreadable."""
    try:
        info = sf.info(path)
        frames = int(max_seconds * info.samplerate)
        wav, sr = sf.read(path, frames=frames, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        log.warning("report: cannot read audio %s (%s)", path, e)
        return None
    return wav.mean(1), sr


def audio_uri(path: str, max_seconds: float = 30.0) -> str | None:
    """The clip re-encoded as 16-bit PCM WAV (every browser plays it, whatever the source format);
    None when the file cannot be read (the report then says so instead of showing a dead player)."""
    audio = read_audio(path, max_seconds)
    if audio is None:
        return None
    wav, sr = audio
    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
