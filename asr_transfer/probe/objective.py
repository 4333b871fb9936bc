"""The probe's objective and its gradient as flat float64 vectors, for a compiled L-BFGS (scipy's L-BFGS-B).

``mean_i CE(head(featurizer(x_i)), y_i) + l2 / 2 * sum ||W||^2`` (see ``lbfgs.py``). Two implementations with one
interface (``pack`` the modules' state into a vector, ``unpack`` it back, ``__call__(p, l2) -> (f, grad)``):

- ``LinearObjective``: a ``LinearHead`` (layer norm or none) on a featurizer without trainable weights or on a
  weighted sum. Its gradient is written out (no autograd graph rebuilt per call), and the features are laid
  out once per fit: a fixed featurizer is applied once; a weighted sum reads ``(layers, clips * dim)``, so each
  evaluation is two matrix-vector passes over the stored features plus ``clips x dim x classes`` products.
- ``AutogradObjective``: any other head (``head=mlp``) through autograd, the same vectors.

Preconditioning (``precondition``): a probe on raw encoder features is badly conditioned (the covariance
of Whisper's layer-normed pooled vectors spans 1e-3..10), which is what made L-BFGS take hundreds of steps.
``LinearObjective`` solves for ``V`` with ``W = V M^T``, ``M = U (Lambda + k * l2)^(-1/2)`` from the
eigendecomposition of the linear layer's (centred) inputs at the start of a solve. This is a change of
variables, not of the problem: the objective as a function of ``W`` and its minimiser are unchanged, only
the path to it is shorter. It costs ``classes x dim x dim`` per evaluation, nothing on the features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_transfer.featurizers import WeightedSum
from asr_transfer.heads.utterance import LinearHead

# the ridge added to the inputs' covariance, in units of l2: makes the preconditioned Hessian of a
# well-fitted softmax (curvature ~0.1-0.3 per sample) about isotropic, penalty included
PRECONDITION_RIDGE = 3.0


def linear_path(featurizer: nn.Module, head: nn.Module) -> bool:
    """Whether ``LinearObjective`` covers this pair (else ``AutogradObjective``)."""
    trainable = any(p.requires_grad for p in featurizer.parameters())
    weighted = type(featurizer) is WeightedSum and not featurizer.layer_norm
    norm = isinstance(getattr(head, "norm", None), nn.LayerNorm | nn.Identity)
    return type(head) is LinearHead and norm and (weighted or not trainable)


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().reshape(-1).numpy()


class LinearObjective:
    """featurizer (fixed or ``WeightedSum``) + ``LinearHead``; modules in float64. ``p = [logits | V | b]``."""

    def __init__(self, featurizer: nn.Module, head: LinearHead, x: Tensor, y: Tensor) -> None:
        self.featurizer, self.head = featurizer, head
        self.weighted = any(p.requires_grad for p in featurizer.parameters())
        stack = x.to(torch.float64).transpose(0, 1)  # (layers, clips, dim): featurizers reduce dim 0
        self.n, self.classes = len(y), head.linear.out_features
        if self.weighted:  # one contiguous copy: z = w @ x and dlogits/dw = x @ dz are each one gemv
            self.layers = stack.shape[0]
            self.x = stack.reshape(self.layers, -1).contiguous()
        else:  # last | layer | concat: a constant, computed once
            self.layers = 0
            with torch.no_grad():
                self.z = featurizer(stack).contiguous()
        self.dim = head.linear.in_features
        self.onehot = F.one_hot(y, self.classes).to(torch.float64)
        norm = head.norm
        self.eps = norm.eps if isinstance(norm, nn.LayerNorm) else None
        affine = isinstance(norm, nn.LayerNorm) and norm.elementwise_affine
        self.gamma = norm.weight.detach().double() if affine else None
        self.beta = norm.bias.detach().double() if affine and norm.bias is not None else None
        self.m = self.m_inv_t = None  # the preconditioner: W = V @ m.T (None: V = W)

    # ----- the model ---------------------------------------------------------------------------
    def inputs(self, logits: Tensor | None = None) -> tuple[Tensor, tuple]:
        """The linear layer's input ``(clips, dim)`` and what the backward pass needs."""
        if self.weighted:
            w = torch.softmax(logits, 0)
            z = (w @ self.x).view(self.n, self.dim)
        else:
            w, z = None, self.z
        if self.eps is None:
            return z, (w, None, None)
        zc = z - z.mean(1, keepdim=True)
        rstd = torch.rsqrt(zc.pow(2).mean(1, keepdim=True) + self.eps)
        h = zc * rstd
        u = h if self.gamma is None else h * self.gamma
        u = u if self.beta is None else u + self.beta
        return u, (w, h, rstd)

    def split(self, p: np.ndarray) -> tuple[Tensor | None, Tensor, Tensor]:
        p = torch.from_numpy(p)
        k, cd = self.layers, self.classes * self.dim
        v = p[k : k + cd].view(self.classes, self.dim)
        return (p[:k] if k else None), (v if self.m is None else v @ self.m.T), p[k + cd :]

    def __call__(self, p: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        logits_w, weight, bias = self.split(p)
        u, (w, h, rstd) = self.inputs(logits_w)
        out = torch.addmm(bias, u, weight.T)
        lse = torch.logsumexp(out, 1, keepdim=True)
        loss = (lse.sum() - (out * self.onehot).sum()) / self.n + 0.5 * l2 * weight.pow(2).sum()
        g = (torch.exp(out - lse) - self.onehot) / self.n  # d loss / d out
        d_weight = torch.addmm(weight, g.T, u, beta=l2)
        if self.m is not None:
            d_weight = d_weight @ self.m
        grads = [d_weight.view(-1), g.sum(0)]
        if self.weighted:
            dz = g @ weight
            if self.eps is not None:  # back through the layer norm
                dh = dz if self.gamma is None else dz * self.gamma
                dz = rstd * (dh - dh.mean(1, keepdim=True) - h * (dh * h).mean(1, keepdim=True))
            dw = self.x @ dz.view(-1)
            grads.insert(0, w * (dw - w @ dw))  # back through the softmax over layers
        return float(loss), torch.cat(grads).numpy()

    # ----- state <-> vector ----------------------------------------------------------------------
    def precondition(self, l2: float) -> None:
        """Choose ``M`` for the solve at this ``l2`` from the inputs the current state gives."""
        with torch.no_grad():
            u = self.inputs(self.featurizer.logits.detach() if self.weighted else None)[0]
            u = u - u.mean(0)
            lam, vecs = torch.linalg.eigh(u.T @ u / self.n)
            scale = (lam.clamp(min=0) + PRECONDITION_RIDGE * l2).sqrt()
        # M = U S^-1 with U orthogonal, so M^-T = U S: both without an inverse
        self.m, self.m_inv_t = vecs / scale, vecs * scale

    def pack(self) -> np.ndarray:
        weight = self.head.linear.weight.detach()
        if self.m is not None:  # V = W M^-T
            weight = weight @ self.m_inv_t
        parts = [weight, self.head.linear.bias.detach()]
        if self.weighted:
            parts.insert(0, self.featurizer.logits.detach())
        return np.concatenate([_numpy(t.double()) for t in parts])

    @torch.no_grad()
    def unpack(self, p: np.ndarray) -> None:
        logits, weight, bias = self.split(p)
        self.head.linear.weight.copy_(weight)
        self.head.linear.bias.copy_(bias)
        if self.weighted:
            self.featurizer.logits.copy_(logits)


class AutogradObjective:
    """Any head (``head=mlp``): the fitted parameters flattened, gradients by autograd (float64)."""

    def __init__(self, featurizer: nn.Module, head: nn.Module, x: Tensor, y: Tensor, fitted, penalised):
        self.featurizer, self.head, self.y = featurizer, head, y
        self.fitted, self.penalised = fitted, penalised
        self.x = x.to(torch.float64).transpose(0, 1).contiguous()

    def precondition(self, l2: float) -> None:  # the generic path takes the problem as it is
        pass

    def pack(self) -> np.ndarray:
        return nn.utils.parameters_to_vector(self.fitted).detach().double().numpy().copy()

    @torch.no_grad()
    def unpack(self, p: np.ndarray) -> None:
        nn.utils.vector_to_parameters(torch.from_numpy(p), self.fitted)

    def __call__(self, p: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        self.unpack(p)
        with torch.enable_grad():
            out = self.head(self.featurizer(self.x))
            loss = F.cross_entropy(out, self.y) + 0.5 * l2 * sum((w * w).sum() for w in self.penalised)
            grads = torch.autograd.grad(loss, self.fitted)
        return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads]).numpy()
