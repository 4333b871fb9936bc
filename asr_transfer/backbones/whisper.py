"""Whisper's encoder on the real clip length.

The Hugging Face encoder insists on a 30 s log-mel window (3000 frames) and ignores attention
masks, so a 0.5 s digit would cost 30 s of compute. Here the encoder is run layer by layer on
the real number of frames: the sinusoidal-initialised positional table is *sliced* to the clip
length (positions 0..T-1 are exactly those the 30 s model gives the first T frames) and padded
frames inside a batch are masked out of attention. ``pad_to_30s=true`` restores the stock
behaviour for comparison (a 30 s window reportedly helps long-form decoding).
``return_window=true`` returns the states of the whole window (clip + trailing silence), which is
what Whisper's own decoder cross-attends to (``task=seq2seq``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_transfer.backbones.base import Backbone
from asr_transfer.utils.hub import load_pretrained, safetensors_files
from asr_transfer.utils.masks import lengths_to_mask

N_FFT = 400
HOP = 160


class WhisperEncoderBackbone(Backbone):
    """Whisper encoder (any size) from a hub id or a local directory.

    Hidden states: the conv + positional embedding output, then every encoder layer; the last
    one has the final layer norm applied (as Whisper's decoder sees it).
    """

    sample_rate = 16000
    normalize_waveform = False  # Whisper normalises its own log-mel input
    adapter_targets = {
        "lora": (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            "fc1",
            "fc2",
        ),
        "bottleneck": ("self_attn", "fc2"),  # the feed-forward block ends in fc2 (no module of its own)
    }

    def __init__(
        self,
        name_or_path: str = "openai/whisper-tiny.en",
        pad_to_30s: bool = False,
        min_window_s: float = 1.0,  # chosen on val: experiments/min_window/
        pretrained: bool = True,
        attn_implementation: str = "sdpa",
        config_overrides: dict | None = None,
        return_window: bool = False,
        **settings,
    ) -> None:
        super().__init__(**settings)
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        self.name_or_path = name_or_path
        self.pretrained = pretrained
        self.pad_to_30s = pad_to_30s
        self.min_window_s = float(min_window_s)
        self.return_window = bool(return_window)
        if pretrained:
            config = load_pretrained(
                lambda p: WhisperConfig.from_pretrained(p, **(config_overrides or {})), name_or_path
            )
            config._attn_implementation = attn_implementation
            self.model = load_pretrained(lambda p: _load_encoder(p, config), name_or_path)
        else:
            config = WhisperConfig(**(config_overrides or {}))
            config._attn_implementation = attn_implementation
            self.model = WhisperEncoder(config)
        # Layers are summed downstream: a dropped layer would shift which state is which.
        self.model.layerdrop = self.layer_drop or 0.0
        self.config = config
        self.num_layers = config.encoder_layers + 1
        self.hidden_size = config.d_model
        self.downsample_rate = HOP * 2
        self.n_mels = config.num_mel_bins
        self.max_frames = config.max_source_positions * 2
        self.register_buffer("mel_filters", _mel_filters(self.n_mels), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.apply_freeze()

    def identity(self) -> str:
        return (
            f"whisper:{self.name_or_path}:pretrained={self.pretrained}:pad30={self.pad_to_30s}"
            f":window={self.min_window_s}" + (":return_window" if self.return_window else "")
        )

    def window_lengths(self, lengths: Tensor) -> Tensor:
        """Samples each clip is encoded with: its own length, or at least ``min_window_s`` of audio
        (the clip + trailing silence), or the full 30 s window with ``pad_to_30s``."""
        window = self.max_frames * HOP if self.pad_to_30s else int(self.min_window_s * self.sample_rate)
        return lengths.clamp(min=window)

    def feature_encoder_modules(self) -> list[nn.Module]:
        return [self.model.conv1, self.model.conv2, self.model.embed_positions]

    def transformer_layers(self) -> list[nn.Module]:
        return list(self.model.layers)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        mel = torch.div(lengths, HOP, rounding_mode="floor").clamp(min=1)
        return torch.div(mel + 1, 2, rounding_mode="floor")  # conv2 has stride 2, padding 1

    def log_mel(self, wavs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Whisper's log-mel features of each clip on its own, zero padded to the longest.

        Computed per clip so that neither the STFT's edge frames nor the per-clip peak
        normalisation ever see another clip's padding. Returns (batch, n_mels, frames) and valid
        mel frames per clip.
        """
        n_frames = torch.div(lengths, HOP, rounding_mode="floor").clamp(min=1)
        mel = wavs.new_zeros(wavs.shape[0], self.n_mels, int(n_frames.max()), dtype=torch.float32)
        # Clips of equal length (e.g. every short clip inside the same silence window) share one
        # batched STFT: each row is still exactly that clip's own transform and peak.
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths.tolist()):
            groups.setdefault(max(n, HOP), []).append(i)
        for n, rows in groups.items():
            wav = wavs[rows, :n].float()
            stft = torch.stft(wav, N_FFT, HOP, window=self.window, return_complex=True)
            power = stft[..., :-1].abs() ** 2
            m = (self.mel_filters @ power).clamp(min=1e-10).log10()
            m = (torch.maximum(m, m.amax(dim=(-2, -1), keepdim=True) - 8.0) + 4.0) / 4.0
            mel[rows, :, : m.shape[-1]] = m.to(mel.dtype)  # bf16 under autocast
        return mel, n_frames

    def _forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        if wavs.shape[-1] > self.max_frames * HOP:
            raise ValueError(
                f"clip of {wavs.shape[-1] / self.sample_rate:.1f} s is longer than Whisper's 30 s window: "
                "set data.max_duration (crop or chunk long recordings)"
            )
        # Short clips are encoded inside a short window of trailing silence (what Whisper saw in
        # training, at a fraction of the 30 s cost); pooling and CTC still use the real frames.
        windows = self.window_lengths(lengths)
        if int(windows.max()) > wavs.shape[-1]:
            wavs = F.pad(wavs, (0, int(windows.max()) - wavs.shape[-1]))
        mel, n_mel = self.log_mel(wavs, windows)
        enc = self.model
        dtype = enc.conv1.weight.dtype
        x = F.gelu(enc.conv1(mel.to(dtype)))
        # conv2 must see zeros past each window's end, exactly as for the clip alone.
        x = x * lengths_to_mask(n_mel, x.shape[-1])[:, None, :].to(x.dtype)
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        frames = x.shape[1]
        x = x + enc.embed_positions.weight[:frames].to(x.dtype)
        x = F.dropout(x, p=enc.dropout, training=self.training)
        frame_lengths = self.frame_lengths(lengths).clamp(max=frames)
        keep = lengths_to_mask(self.frame_lengths(windows).clamp(max=frames), frames)
        mask = None
        if not bool(keep.all()):
            mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(~keep, torch.finfo(x.dtype).min)[:, None, None, :]
        hidden = [x]
        for i, layer in enumerate(enc.layers):
            if self.training and enc.layerdrop > 0 and torch.rand([]) < enc.layerdrop:
                hidden.append(x)
                continue
            x = layer(x, mask)
            hidden.append(enc.layer_norm(x) if i == len(enc.layers) - 1 else x)
        if self.return_window:  # Whisper's decoder attends to the whole window (task=seq2seq)
            frame_lengths = keep.sum(1)
        # Otherwise the silence window served as context only: return the clips' own frames.
        t = int(frame_lengths.max())
        return [h[:, :t] for h in hidden], frame_lengths


ENCODER_PREFIXES = ("model.encoder.", "encoder.")  # WhisperForConditionalGeneration / WhisperModel keys


def _load_encoder(path: str, config) -> nn.Module:
    """Only the encoder: its tensors are read from the checkpoint's safetensors (one file or shards) into
    a ``WhisperEncoder`` built on the meta device, so the decoder (half of a large Whisper) is never
    allocated and an encoder-only checkpoint loads without a missing-decoder report. A checkpoint
    without safetensors (an old ``pytorch_model.bin``) goes through ``WhisperModel``."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    files = safetensors_files(path)
    if not files:
        from transformers import WhisperModel

        return WhisperModel.from_pretrained(path, config=config).get_encoder()
    from safetensors import safe_open

    state = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                prefix = next((p for p in ENCODER_PREFIXES if key.startswith(p)), None)
                if prefix is not None:
                    state[key[len(prefix) :]] = f.get_tensor(key).to(torch.get_default_dtype())
    with torch.device("meta"):
        encoder = WhisperEncoder(config)
    expected = set(encoder.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"backbone.name_or_path={path!r}: the checkpoint's encoder does not match its config.json "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}): is it a Whisper checkpoint?"
        )
    encoder.load_state_dict(state, assign=True)
    return encoder.eval()


def _mel_filters(n_mels: int) -> Tensor:
    """Slaney-style mel filterbank identical to Whisper's (librosa defaults), (n_mels, n_fft//2+1)."""
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(fb.T.copy()).float()
