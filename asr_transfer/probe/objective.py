"""The probe's objective and its gradient as flat float64 vectors, for a compiled L-BFGS (scipy's L-BFGS-B).

``mean_i CE(head(featurizer(x_i)), y_i) + l2 / 2 * sum ||W||^2`` (see ``lbfgs.py``). Two implementations with one
interface (``pack`` the modules' state into a vector, ``unpack`` it back, ``__call__(p, l2) -> (f, grad)``):

- ``LinearObjective``: a ``LinearHead`` (layer norm or none) on a featurizer without trainable weights or on a
  weighted sum. The gradient is written out (no autograd graph rebuilt per call) and the features are laid
  out once per fit. A fixed featurizer and the layer norm are applied once: each evaluation is then two
  ``clips x dim x classes`` products. A weighted sum reads ``(layers, clips * dim)``: one matrix-vector pass
  forms ``z = sum_l w_l x_l``, one more gives the layer weights' gradient, and the layer norm is carried
  through ``clips x classes`` algebra (per-clip means and Gram matrices of the layers, computed once)
  instead of ten elementwise passes over ``clips x dim``, which is where the autograd version spent its time.
- ``AutogradObjective``: any other head (``head=mlp``) through autograd, the same vectors.

A linear head's convex problem at the featurizer's current state is handed to L-BFGS as ``WhitenedHead``, in
coordinates whose curvature is near the identity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_transfer.featurizers import WeightedSum
from asr_transfer.heads.utterance import LinearHead


def linear_path(featurizer: nn.Module, head: nn.Module) -> bool:
    """Whether ``LinearObjective`` covers this pair (else ``AutogradObjective``)."""
    trainable = any(p.requires_grad for p in featurizer.parameters())
    weighted = type(featurizer) is WeightedSum and not featurizer.layer_norm
    norm = isinstance(getattr(head, "norm", None), nn.LayerNorm | nn.Identity)
    return type(head) is LinearHead and norm and (weighted or not trainable)


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().reshape(-1).numpy()


class LinearObjective:
    """featurizer (fixed or ``WeightedSum``) + ``LinearHead``, modules in float64; ``p = [layer logits | W | b]``."""

    def __init__(
        self,
        featurizer: nn.Module,
        head: LinearHead,
        x: Tensor,
        y: Tensor,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        """``dtype``: of a weighted sum's products over clips x dim (the loss and the gradient are float64
        either way)."""
        self.featurizer, self.head, self.source = featurizer, head, (x, y)
        self.weighted = any(p.requires_grad for p in featurizer.parameters())
        # a fixed featurizer's fit reads one clips x dim matrix: float64, so it equals scikit-learn's
        self.dtype = dtype = dtype if self.weighted else torch.float64
        self.n, self.classes, self.dim = len(y), head.linear.out_features, head.linear.in_features
        self.onehot = F.one_hot(y, self.classes).to(torch.float64)
        norm = head.norm
        self.eps = norm.eps if isinstance(norm, nn.LayerNorm) else None
        affine = isinstance(norm, nn.LayerNorm) and norm.elementwise_affine
        ones = torch.ones(self.dim, dtype=dtype)
        self.gamma = norm.weight.detach().to(dtype) if affine else ones
        self.beta = norm.bias.detach().to(dtype) if affine and norm.bias is not None else 0 * ones
        self.layers = x.shape[1] if self.weighted else 0
        if self.weighted:  # one contiguous copy: z = w @ x and x @ dz are each one gemv
            # (layers, clips x dim), only here: a fixed featurizer's fit never reads the stack
            self.x = x.to(dtype).transpose(0, 1).reshape(self.layers, -1).contiguous()
            if self.eps is not None:  # per clip: each layer's sum over dim, and the layers' Gram matrix
                by_clip = x.double()  # (clips, layers, dim); float64: the variance is a difference
                self.sums = by_clip.sum(-1)  # (clips, layers)
                self.gram = torch.bmm(by_clip, by_clip.transpose(1, 2))  # (clips, layers, layers)
        else:  # last | layer | concat and the layer norm: a constant, computed once
            with torch.no_grad():
                self.u = head.norm(featurizer(x.double().transpose(0, 1))).to(dtype).contiguous()

    def head_problem(self, l2: float) -> WhitenedHead:
        """The head's convex problem at the featurizer's current state (a weighted sum: its current layer
        weights), whitened for ``l2`` at the head's current state: one clips x dim matrix per evaluation."""
        if not self.weighted:
            return WhitenedHead(self.head, self.u, self.onehot, l2)
        w = self.featurizer.weights().detach()
        z = (w.to(self.dtype) @ self.x).view(self.n, self.dim)  # from the laid-out stack: one gemv
        with torch.no_grad():
            u = self.head.norm(z.double()).to(self.dtype)
        return WhitenedHead(self.head, u, self.onehot, l2)

    def split(self, p: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        p = torch.from_numpy(p)
        k, cd = self.layers, self.classes * self.dim
        return p[:k], p[k : k + cd].view(self.classes, self.dim), p[k + cd :]

    def __call__(self, p: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        # the products over clips x dim run in self.dtype; everything clips x classes or smaller, the
        # loss and the returned gradient in float64
        logits_w, weight, bias = self.split(p)
        lo, dt = weight.to(self.dtype), self.dtype
        if not self.weighted:
            out = (lo @ self.u.T).T.double() + bias  # this order: ~1.7x faster for few classes
            loss, g = _loss(out, self.onehot, 0.5 * l2 * weight.pow(2).sum())
            d_weight = (g.T.to(dt) @ self.u).double() + l2 * weight
            return loss, torch.cat([d_weight.view(-1), g.sum(0)]).numpy()
        w = torch.softmax(logits_w, 0)
        z = (w.to(dt) @ self.x).view(self.n, self.dim)
        if self.eps is None:
            out = (lo @ z.T).T.double() + bias
            loss, g = _loss(out, self.onehot, 0.5 * l2 * weight.pow(2).sum())
            d_weight = (g.T.to(dt) @ z).double() + l2 * weight
            dw = (self.x @ (g.to(dt) @ lo).view(-1)).double()
        else:
            # u = (z - mu) * rstd * gamma + beta, so u @ W^T = rstd * (z @ Wg^T - mu * r) + W @ beta
            wg = weight * self.gamma.double()
            wg_lo = wg.to(dt)
            r = wg.sum(1)
            mu = self.sums @ w / self.dim
            kw = self.gram @ w  # (clips, layers)
            rstd = torch.rsqrt(kw @ w / self.dim - mu * mu + self.eps)
            a = (wg_lo @ z.T).T.double() - mu[:, None] * r  # (as above)
            out = rstd[:, None] * a + (weight @ self.beta.double() + bias)
            loss, g = _loss(out, self.onehot, 0.5 * l2 * weight.pow(2).sum())
            gs = g * rstd[:, None]
            gs_lo, gamma = gs.to(dt), self.gamma.double()
            d_weight = ((gs_lo.T @ z).double() - torch.outer(gs.T @ mu, torch.ones_like(gamma))) * gamma
            d_weight += torch.outer(g.sum(0), self.beta.double()) + l2 * weight
            # d loss / d w_l = sum_nd dz_nd x_nld, with dz the layer norm's backward of dh = g @ Wg:
            # rstd * (dh - mean(dh) - h * mean(dh * h)), each term reduced through sums, gram and a
            m1 = g @ r / self.dim  # mean_d dh
            m2 = (g * a).sum(1) * rstd / self.dim  # mean_d dh * h
            hx = rstd[:, None] * (kw - mu[:, None] * self.sums)  # sum_d h_d x_ld
            dw = (self.x @ (gs_lo @ wg_lo).view(-1)).double()
            dw = dw - (rstd * m1) @ self.sums - (rstd * m2) @ hx
        d_logits = w * (dw - w @ dw)  # back through the softmax over layers
        return loss, torch.cat([d_logits, d_weight.view(-1), g.sum(0)]).numpy()

    def pack(self) -> np.ndarray:
        parts = [self.head.linear.weight, self.head.linear.bias]
        if self.weighted:
            parts.insert(0, self.featurizer.logits)
        return np.concatenate([_numpy(t.double()) for t in parts])

    @torch.no_grad()
    def unpack(self, p: np.ndarray) -> None:
        logits, weight, bias = self.split(p)
        self.head.linear.weight.copy_(weight)
        self.head.linear.bias.copy_(bias)
        if self.weighted:
            self.featurizer.logits.copy_(logits)


def _loss(out: Tensor, onehot: Tensor, penalty: Tensor) -> tuple[float, Tensor]:
    """Mean cross-entropy of ``out`` (clips x classes, float64) plus ``penalty``, and d loss / d out."""
    lse = torch.logsumexp(out, 1, keepdim=True)
    loss = (lse.sum() - (out * onehot).sum()) / len(out) + penalty
    return float(loss), (torch.exp(out - lse) - onehot) / len(out)


class WhitenedHead:
    """A linear head's convex problem on fixed inputs ``u`` (clips x dim), in coordinates where its curvature
    is close to the identity; ``p = [V | b']`` with ``W = V diag(s) Q^T`` and ``b = b' - W mu``.

    L-BFGS's steps are only as good as the problem's conditioning, and pretrained features are far from
    isotropic: a few directions carry most of the variance, and near the optimum the curvature comes from
    the few clips the head is still unsure of. The Gauss-Newton curvature of the mean cross-entropy in ``W`` is
    close to ``I_classes x C + l2 I``, with ``C`` the clips' second moment about ``mu``, each clip weighted by
    its softmax variance ``1 - sum_k p_k^2`` at the start (the previous grid value's optimum) and divided by
    the class count. With ``C = Q diag(lam) Q^T`` and ``s = (lam + l2)^-1/2`` the problem in ``V`` has a
    curvature near the identity, and the L2 becomes the diagonal ``l2 / 2 * sum_kj s_j^2 V_kj^2``. It is a
    change of variables: the optimum, mapped back, is the unwhitened problem's (scikit-learn's equality holds),
    and on the 1500-clip FSDD problem L-BFGS reaches it in about half the evaluations
    (experiments/throughput/README.md, "Probe speed").

    The start is moved to the zero class-mean ``W``: softmax is unchanged by adding one vector to every
    class's weights, so the optimum has zero class-mean and the move only lowers the L2 term.
    """

    def __init__(self, head: LinearHead, u: Tensor, onehot: Tensor, l2: float) -> None:
        self.head, self.onehot, dtype = head, onehot, u.dtype
        weight, bias = self._start()
        with torch.no_grad():
            u64 = u.double()
            p = torch.softmax(u64 @ weight.T + bias, 1)
            var = 1 - (p * p).sum(1)  # each clip's softmax variance: its share of the curvature
            self.mu = (var @ u64) / var.sum()
            centred = (u - self.mu.to(dtype)).contiguous()
            second = (centred.T * var.to(dtype)) @ centred / (len(u) * onehot.shape[1])
            lam, self.q = torch.linalg.eigh(second)
            self.s = (lam.double().clamp(min=0) + l2).rsqrt()
            self.u = (centred @ self.q) * self.s.to(dtype)  # the whitened inputs, clips x dim
            self.q = self.q.double()
        self.penalty = self.s.pow(2)  # ||W||^2 = sum_kj s_j^2 V_kj^2
        self.classes, self.dim = weight.shape

    def _start(self) -> tuple[Tensor, Tensor]:
        weight = self.head.linear.weight.detach().double()
        return weight - weight.mean(0), self.head.linear.bias.detach().double()

    def __call__(self, p: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        p = torch.from_numpy(p)
        v, bias = p[: self.classes * self.dim].view(self.classes, self.dim), p[self.classes * self.dim :]
        out = (v.to(self.u.dtype) @ self.u.T).T.double() + bias  # this order: ~1.7x faster for few classes
        loss, g = _loss(out, self.onehot, 0.5 * l2 * (v.pow(2) * self.penalty).sum())
        d_v = (g.T.to(self.u.dtype) @ self.u).double() + l2 * self.penalty * v
        return loss, torch.cat([d_v.view(-1), g.sum(0)]).numpy()

    def pack(self) -> np.ndarray:
        weight, bias = self._start()
        v = (weight @ self.q) / self.s
        return torch.cat([v.reshape(-1), bias + weight @ self.mu]).numpy()

    @torch.no_grad()
    def unpack(self, p: np.ndarray) -> None:
        p = torch.from_numpy(p)
        weight = (p[: self.classes * self.dim].view(self.classes, self.dim) * self.s) @ self.q.T
        self.head.linear.weight.copy_(weight)
        self.head.linear.bias.copy_(p[self.classes * self.dim :] - weight @ self.mu)


class AutogradObjective:
    """Any head (``head=mlp``) or loss (``probe/objectives.py``: tagging, regression): the fitted parameters
    flattened, gradients by autograd (float64)."""

    def __init__(self, featurizer, head, x: Tensor, y: Tensor, fitted, penalised, loss=F.cross_entropy):
        self.featurizer, self.head, self.y, self.loss = featurizer, head, y, loss
        self.fitted, self.penalised = fitted, penalised
        self.x = x.to(torch.float64).transpose(0, 1).contiguous()

    def pack(self) -> np.ndarray:
        return nn.utils.parameters_to_vector(self.fitted).detach().double().numpy().copy()

    @torch.no_grad()
    def unpack(self, p: np.ndarray) -> None:
        nn.utils.vector_to_parameters(torch.from_numpy(p), self.fitted)

    def __call__(self, p: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        self.unpack(p)
        with torch.enable_grad():
            out = self.head(self.featurizer(self.x))
            loss = self.loss(out, self.y) + 0.5 * l2 * sum((w * w).sum() for w in self.penalised)
            grads = torch.autograd.grad(loss, self.fitted)
        return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads]).numpy()
