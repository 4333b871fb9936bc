"""Whisper's own pretrained decoder as the head of ``task=seq2seq``.

It reads the encoder's final states (``featurizer=last`` of ``backbone=whisper`` with
``return_window=true``, live or from the features store) and predicts tokens. Only the decoder's
tensors are read from the checkpoint (the encoder is the backbone, loaded once); the model around
them is a ``WhisperForConditionalGeneration`` whose encoder is a parameterless stand-in, so
``generate`` (with the checkpoint's own ``generation_config``: suppress_tokens, forced prefixes,
max_length) decodes from given encoder states.

Freezing mirrors the backbone's settings: ``freeze`` all | none | top_k over the decoder layers;
``train_embeddings`` names the token embedding, which Whisper ties to its output projection, plus the
learned positions; ``adapter`` (LoRA / bottleneck spec objects of ``backbones/adapters.py``) attaches
to the decoder's self-attention, cross-attention and feed-forward linears.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_transfer.heads.base import Head
from asr_transfer.utils.freeze import check_freeze_policy
from asr_transfer.utils.hub import load_pretrained, safetensors_files
from asr_transfer.utils.masks import lengths_to_mask

KEY = "head.name_or_path"  # the setting named when loading fails
DECODER_PREFIXES = ("model.decoder.", "decoder.")  # WhisperForConditionalGeneration / WhisperModel keys


class _EncoderGeometry(nn.Module):
    """Stands in for the encoder inside the generation model: ``generate`` reads the conv strides
    only, when it is given encoder states. No weights (the real encoder is the backbone)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Module(), nn.Module()
        self.conv1.stride, self.conv2.stride = (1,), (2,)

    def forward(self, *args, **kwargs):
        raise RuntimeError("the decoder head holds no encoder: pass encoder states (encoder_outputs)")


class WhisperDecoderHead(Head):
    """``forward(frames (B, T, D), lengths (B,), decoder_input_ids (B, S)) -> logits (B, S, vocab)``."""

    output = "tokens"
    adapter_targets = {
        "lora": tuple(
            f"{block}.{p}"
            for block in ("self_attn", "encoder_attn")
            for p in ("q_proj", "k_proj", "v_proj", "out_proj")
        )
        + ("fc1", "fc2"),
        "bottleneck": ("self_attn", "encoder_attn", "fc2"),
    }

    def __init__(
        self,
        input_size: int,
        name_or_path: str = "openai/whisper-tiny.en",
        freeze: str = "none",
        top_k: int = 0,
        train_embeddings: bool = False,
        adapter=None,
        pretrained: bool = True,
        config_overrides: dict | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        super().__init__()
        check_freeze_policy(freeze, top_k, "head")
        if freeze == "feature_encoder":
            raise ValueError("head.freeze=feature_encoder: the decoder has none; use all | none | top_k")
        self.name_or_path, self.freeze, self.top_k = name_or_path, freeze, int(top_k)
        self.train_embeddings, self.adapter = bool(train_embeddings), adapter
        self.model = _load_decoder(name_or_path, pretrained, config_overrides or {}, attn_implementation)
        self.config = self.model.config
        self.hidden_size = self.config.d_model
        if input_size != self.hidden_size:
            raise ValueError(
                f"head.name_or_path={name_or_path!r}: its decoder reads {self.hidden_size}-dim encoder states "
                f"but the backbone gives {input_size}: use the same checkpoint for backbone and head"
            )
        self.max_positions = self.config.max_target_positions
        self._adapter_params: set[str] = set()
        if adapter is not None:
            # Held while attaching: a freed parameter's id could be reused by a new adapter parameter.
            kept = list(self.parameters())
            before = {id(p) for p in kept}
            adapter.attach(self)
            self._adapter_params = {n for n, p in self.named_parameters() if id(p) not in before}
            del kept
        self.apply_freeze()

    @property
    def decoder(self) -> nn.Module:
        return self.model.model.decoder

    def transformer_layers(self) -> list[nn.Module]:
        return list(self.decoder.layers)

    def adapter_modules(self) -> list[nn.Module]:
        return [] if self.adapter is None else self.adapter.modules(self)

    def embedding_modules(self) -> list[nn.Module]:
        """The token embedding (= the output projection, tied) and the learned positions."""
        return [self.decoder.embed_tokens, self.decoder.embed_positions, self.model.proj_out]

    def apply_freeze(self) -> None:
        """``requires_grad`` by ``freeze`` (layers; the final norm trains with the top layer), then the
        embeddings by ``train_embeddings``; adapter parameters always train."""
        self.requires_grad_(self.freeze == "none")
        if self.freeze == "top_k":
            layers = self.transformer_layers()
            if self.top_k > len(layers):
                raise ValueError(f"head.top_k={self.top_k} but the decoder has only {len(layers)} layers")
            for layer in layers[len(layers) - self.top_k :]:
                layer.requires_grad_(True)
            self.decoder.layer_norm.requires_grad_(True)
        for m in self.embedding_modules():
            m.requires_grad_(self.train_embeddings)
        for name, p in self.named_parameters():
            if name in self._adapter_params:
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> WhisperDecoderHead:
        # Frozen layers stay in eval mode (no dropout), as the backbone's do.
        super().train(mode)
        if self.freeze != "none":
            top = len(self.transformer_layers()) - (self.top_k if self.freeze == "top_k" else 0)
            for layer in self.transformer_layers()[:top]:
                layer.train(False)
        for m in self.adapter_modules():
            m.train(mode)
        return self

    def forward(
        self, frames: Tensor, lengths: Tensor | None, decoder_input_ids: Tensor, cache=None
    ) -> Tensor:
        """Teacher-forced logits (B, S, vocab). Clips whose encoder states are shorter than the batch's
        longest are masked out of cross-attention (Hugging Face's decoder takes no encoder mask). With a
        ``cache`` (transformers' ``EncoderDecoderCache``), ``decoder_input_ids`` continue the cached ones."""
        dec = self.decoder
        past = 0 if cache is None else cache.get_seq_length()
        x = dec.embed_tokens(decoder_input_ids) * dec.embed_scale
        s = decoder_input_ids.shape[1]
        x = x + dec.embed_positions.weight[past : past + s].to(x.dtype)
        x = nn.functional.dropout(x, p=dec.dropout, training=self.training)
        neg = torch.finfo(x.dtype).min
        causal = None  # one new token attends to every cached one
        if s > 1:
            causal = torch.full((s, past + s), neg, dtype=x.dtype, device=x.device).triu(past + 1)
            causal = causal[None, None].expand(x.shape[0], 1, s, past + s)
        cross = None
        frames = frames.to(x.dtype)
        if lengths is not None and bool((lengths < frames.shape[1]).any()):
            keep = lengths_to_mask(lengths.to(frames.device), frames.shape[1])
            cross = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, neg)
            cross = cross[:, None, None, :].expand(-1, 1, s, -1)
        for layer in dec.layers:
            x = layer(
                x, causal, frames, encoder_attention_mask=cross, cache=cache, use_cache=cache is not None
            )
        return self.model.proj_out(dec.layer_norm(x))

    @torch.no_grad()
    def greedy(
        self, frames: Tensor, lengths: Tensor | None, prefix: list[int], max_new_tokens: int | None = None
    ) -> list[list[int]]:
        """Greedy decoding of the whole batch at once, equal to ``generate``'s greedy output clip by clip
        (``tests/tasks/test_seq2seq.py``): the checkpoint's ``suppress_tokens`` and
        ``begin_suppress_tokens``, the same length limit; the output holds the generated tokens without
        the end-of-text (as ``generate`` returns them), padded with ``pad_token_id`` to the longest.
        ``generate`` cannot mask padded encoder states, so it would need one call per clip length;
        here the padded states are masked out of cross-attention and keys/values are cached.
        ``prefix``: the forced tokens (prompt, start-of-transcript, language, task, no-timestamps)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        config = self.model.generation_config
        limit = self.max_positions - len(prefix)  # generate's max_length (448) counts the prefix too
        steps = limit if max_new_tokens is None else min(int(max_new_tokens), limit)
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        eos_ids = torch.tensor(eos, device=frames.device)
        suppress = torch.tensor(config.suppress_tokens or [], dtype=torch.long, device=frames.device)
        at_begin = torch.tensor(config.begin_suppress_tokens or [], dtype=torch.long, device=frames.device)
        batch = frames.shape[0]
        ids = torch.tensor([prefix], device=frames.device).expand(batch, -1)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        done = torch.zeros(batch, dtype=torch.bool, device=frames.device)
        out: list[Tensor] = []
        for step in range(steps):
            scores = self.forward(frames, lengths, ids, cache)[:, -1].float()
            scores[:, suppress] = -float("inf")
            if step == 0:
                scores[:, at_begin] = -float("inf")
            token = scores.argmax(-1).masked_fill(done, config.pad_token_id)
            out.append(token)
            done |= torch.isin(token, eos_ids)
            if bool(done.all()):
                break
            ids = token[:, None]
        rows = torch.stack(out, 1).tolist() if out else [[] for _ in range(batch)]
        # As generate returns them: each sequence without its end-of-text, padded to the longest.
        rows = [r[: next((i for i, t in enumerate(r) if t in eos), len(r))] for r in rows]
        width = max(len(r) for r in rows)
        return [r + [config.pad_token_id] * (width - len(r)) for r in rows]

    @torch.no_grad()
    def generate(self, frames: Tensor, lengths: Tensor | None, **kwargs) -> list[list[int]]:
        """Token ids per clip from ``generate`` (checkpoint's generation config + ``kwargs``). Clips are
        decoded in groups of equal encoder length: ``generate`` cannot mask padded encoder states."""
        from transformers.modeling_outputs import BaseModelOutput

        frames = frames.to(next(self.parameters()).dtype)
        n = frames.shape[1] if lengths is None else None
        sizes = [n] * frames.shape[0] if n is not None else [int(t) for t in lengths.tolist()]
        out: list[list[int]] = [[] for _ in sizes]
        for size in sorted(set(sizes)):
            rows = [i for i, t in enumerate(sizes) if t == size]
            states = BaseModelOutput(last_hidden_state=frames[rows, :size].contiguous())
            ids = self.model.generate(encoder_outputs=states, **kwargs)
            ids = ids.sequences if hasattr(ids, "sequences") else ids
            for i, seq in zip(rows, ids.tolist()):
                out[i] = seq
        return out


def _load_decoder(path: str, pretrained: bool, overrides: dict, attn: str) -> nn.Module:
    """A ``WhisperForConditionalGeneration`` with the checkpoint's decoder and generation config and
    no encoder weights. Stops with the missing decoder named for an encoder-only checkpoint."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    from asr_transfer.heads.cross_attention import token_side_cross_attention

    if not pretrained:  # random weights (a control, tests): the checkpoint's tokenizer and generation config
        config = WhisperConfig(**overrides)
        config._attn_implementation = attn
        # A fixed seed, outside the run's random stream: the frozen parts a checkpoint leaves out come
        # back the same in eval and predict.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = WhisperForConditionalGeneration(config)
        token_side_cross_attention(model)
        model.model.encoder = _EncoderGeometry()
        try:
            model.generation_config = load_pretrained(GenerationConfig.from_pretrained, path, KEY)
        except OSError:
            pass  # no folder or hub access: transformers' defaults from the config
        return model.eval()
    config = load_pretrained(lambda p: WhisperConfig.from_pretrained(p, **overrides), path, KEY)
    config._attn_implementation = attn
    state = load_pretrained(_decoder_tensors, path, KEY)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
        token_side_cross_attention(model)
    model.model.encoder = _EncoderGeometry()
    expected = {k for k in model.state_dict() if not k.startswith("proj_out.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing == sorted(expected):
        raise ValueError(
            f"head.name_or_path={path!r} holds no decoder (its checkpoint has no 'model.decoder.*' tensors, "
            "e.g. an encoder-only export): task=seq2seq needs Whisper's decoder; use a full checkpoint "
            "(openai/whisper-base) or task=ctc, which trains a new head on the encoder"
        )
    if missing or unexpected:
        raise ValueError(
            f"head.name_or_path={path!r}: the checkpoint's decoder does not match its config.json "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.load_state_dict(state, assign=True, strict=False)
    model.proj_out.weight = model.model.decoder.embed_tokens.weight  # tied, as in Whisper
    try:
        model.generation_config = load_pretrained(GenerationConfig.from_pretrained, path, KEY)
    except OSError:  # a folder without generation_config.json decodes badly (51 % digit errors on FSDD)
        raise ValueError(
            f"head.name_or_path={path!r} has no generation_config.json: Whisper's decoding needs its "
            "suppress_tokens and forced prefixes; copy it from the hub checkpoint of the same size"
        ) from None
    return model.eval()


def _decoder_tensors(path: str) -> dict[str, Tensor]:
    """The decoder's tensors under ``model.decoder.*`` keys (safetensors, or a ``.bin`` checkpoint)."""
    files = safetensors_files(path)
    state: dict[str, Tensor] = {}
    if not files:
        from transformers import WhisperForConditionalGeneration

        full = WhisperForConditionalGeneration.from_pretrained(path).state_dict()
        return {k: v for k, v in full.items() if k.startswith("model.decoder.")}
    from safetensors import safe_open

    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                prefix = next((p for p in DECODER_PREFIXES if key.startswith(p)), None)
                if prefix is not None:
                    state["model.decoder." + key[len(prefix) :]] = f.get_tensor(key).to(
                        torch.get_default_dtype()
                    )
    return state
