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


def audio_uri(path: str, max_seconds: float = 30.0) -> str | None:
    """The clip re-encoded as 16-bit PCM WAV (every browser plays it, whatever the source format);
    None when the file cannot be read (the report then says so instead of showing a dead player)."""
    try:
        info = sf.info(path)
        frames = int(max_seconds * info.samplerate)
        wav, sr = sf.read(path, frames=frames, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        log.warning("report: cannot embed audio %s (%s)", path, e)
        return None
    buf = io.BytesIO()
    sf.write(buf, np.clip(wav.mean(1), -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
