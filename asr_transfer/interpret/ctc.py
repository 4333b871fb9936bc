"""CTC explained per clip: the posteriorgram (each frame's distribution over the vocabulary) and, for every
token the best path emits, an attribution over the input frames of that token's logit at the frame that
emitted it (Captum, through the featurizer and head: the same methods as ``attribute.frame_attributions``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from asr_transfer.interpret.attribute import METHODS, FrameModel


def emitted_tokens(logits: Tensor, length: int, blank: int = 0) -> list[tuple[int, int]]:
    """logits: (time, vocab) of one clip -> [(frame, token)] where the best path emits a token: the first
    frame of each run of the same non-blank argmax (what greedy decoding keeps)."""
    best = logits[:length].argmax(-1).tolist()
    return [(t, v) for t, v in enumerate(best) if v != blank and (t == 0 or best[t - 1] != v)]


def posteriorgram(logits: Tensor, length: int) -> Tensor:
    """logits: (time, vocab) -> (vocab, valid time) frame posteriors."""
    return logits[:length].float().softmax(-1).T


def token_attributions(
    model: FrameModel,
    frames: Tensor,
    lengths: Tensor,
    tokens: list[tuple[int, int]],
    method: str = "integrated_gradients",
    n_steps: int = 32,
) -> Tensor:
    """frames: (1, layers, time, dim) of one clip -> (tokens, time): per emitted ``(frame, token)``, the
    attribution of that logit to each input frame (summed over layers and dimensions)."""
    if method not in METHODS:
        raise ValueError(f"attribution method {method!r} is not one of {sorted(METHODS)}")
    model.eval()
    explainer = METHODS[method](model)
    kwargs = {"n_steps": n_steps} if method == "integrated_gradients" else {}
    rows = []
    for t, v in tokens:
        attr = explainer.attribute(
            frames.detach().requires_grad_(), target=(t, v), additional_forward_args=(lengths,), **kwargs
        )
        rows.append(attr.sum(dim=(1, 3))[0, : int(lengths[0])].detach())
    return torch.stack(rows) if rows else frames.new_zeros(0, int(lengths[0]))


def ctc_figure(post: Tensor, tokens: list[str], attr: Tensor, seconds: float, title: str):
    """The posteriorgram over time, and one row per emitted token of its attribution over time."""
    from matplotlib.figure import Figure

    rows = max(1, len(tokens))
    fig = Figure(figsize=(6.5, 2.6 + 0.25 * rows))
    ax, bx = fig.subplots(2, 1, sharex=True, height_ratios=[2, max(1, rows / 3)])
    ax.imshow(
        post.numpy(), origin="lower", aspect="auto", extent=(0, seconds, 0, post.shape[0]), cmap="viridis"
    )
    ax.set_ylabel("token id")
    ax.set_title(title, fontsize=9)
    if len(tokens):
        a = attr.numpy()
        scale = abs(a).max() or 1.0
        bx.imshow(a / scale, aspect="auto", extent=(0, seconds, rows, 0), cmap="coolwarm", vmin=-1, vmax=1)
        bx.set_yticks([i + 0.5 for i in range(rows)], [repr(s) for s in tokens], fontsize=7)
    bx.set_xlabel("time (s)")
    fig.tight_layout()
    return fig
