"""A linear probe fitted to convergence: full-batch L-BFGS on the L2-regularised cross-entropy.

On cached pooled features a linear probe is multinomial logistic regression, a convex problem over a
few thousand vectors: it has one optimum, needs no learning rate, epochs or schedule, and L-BFGS
reaches it in a few hundred steps (SUPERB and MTEB-style probes fit it the same way; the objective and its
gradient are in ``objective.py``, the solver is scipy's L-BFGS-B). The only
hyperparameter, the L2 strength, is chosen on the val split from ``l2_grid``; the test split never
reaches this module.

Objective: ``mean_i loss(head(featurizer(x_i)), y_i) + l2 / 2 * sum ||W||^2`` over the weight matrices of
the head's ``nn.Linear`` layers (biases and featurizer weights unpenalised). The task names the loss
(``TransferTask.probe_objective``, ``probe/objectives.py``): cross-entropy is scikit-learn's
``LogisticRegression(C=1 / (l2 * n))``; binary cross-entropy summed over classes is one-vs-rest logistic
regression with the same C per class; squared error summed over outputs is ``Ridge(alpha=l2 * n / 2)``. What is fitted: every ``nn.Linear`` of the head and the
featurizer's own parameters (the weighted sum's layer logits: jointly with the head the problem is
no longer convex, and the fit starts from the uniform weights). A head's LayerNorm stays at its
identity affine map, which the following linear layer would absorb anyway.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from asr_transfer.probe.objective import AutogradObjective, LinearObjective, linear_path
from asr_transfer.probe.objectives import SOFTMAX, Objective

log = logging.getLogger(__name__)


@dataclass
class Features:
    """Pooled per-layer features of one split: ``x`` (clips, layers, dim), ``y`` the targets under the
    batch key ``key`` (class ids (clips,), multi-hot tags or real targets (clips, k))."""

    x: Tensor
    y: Tensor

    @classmethod
    def from_loader(cls, loader, split: str, key: str = "labels") -> Features:
        xs, ys = [], []
        for batch in loader:
            if batch is None:
                continue
            feats = batch.get("features")
            if feats is None or feats.dim() != 3:
                raise ValueError(
                    f"probe=lbfgs fits stored pooled features, but the {split} batches hold "
                    f"{'audio' if feats is None else 'frames'}: use a frozen backbone (backbone.freeze=all, "
                    "features.mode=auto) with a pooling head (head=linear|mlp), or train with the "
                    "minibatch optimizer (probe=none)"
                )
            xs.append(feats)
            ys.append(batch[key])
        return cls(torch.cat(xs), torch.cat(ys))

    def by_layer(self) -> Features:
        """The same features in float64, each layer's clips x dim block contiguous: the featurizer reads
        them as (layers, clips, dim) without a copy (``evaluate`` runs once per grid value and split)."""
        return Features(self.x.transpose(0, 1).double().contiguous().transpose(0, 1), self.y)


@dataclass
class ProbeResult:
    l2: float
    table: list[dict] = field(default_factory=list)  # one row per grid value: l2, val/acc, val/loss, ...
    seconds: float = 0.0


class LBFGSProbe:
    """``probe=lbfgs``: fits ``task.featurizer`` + ``task.head`` in place; ``fit`` returns the chosen L2.

    l2_grid: candidate L2 strengths; the one with the best val score wins (ties: lower val loss). The score
      is the objective's: accuracy (classification), mAP (tagging), negative MSE (regression).
    max_iter: L-BFGS iterations per fit (scipy's L-BFGS-B; it stops earlier once the largest gradient entry is
      below ``tolerance_grad``, or once an iteration
      lowers the objective by less than ``tolerance_change`` x max(|objective|, 1)).
    history_size: L-BFGS's memory (correction pairs).
    num_threads: torch intra-op and BLAS threads while fitting (restored after); null keeps the process's
      settings. A probe's tensors are small (clips x layers x hidden), so splitting each op across threads
      costs more in hand-offs than it saves, and far more on a loaded machine where the second thread waits
      for a core (experiments/throughput/README.md, "Probe speed").
    precision: float32 | float64, the dtype of a weighted sum's products over its layers x clips x dim
      stack, the fit's whole cost; values, gradients and a fixed featurizer's fit stay float64. float32
      halves the memory the products stream and stops where float32 rounding stops lowering the objective
      (tests/probe/test_objective.py pins both against one fixed problem).
    """

    def __init__(
        self,
        l2_grid: list[float] = (1e-4, 1e-3, 1e-2, 1e-1),
        max_iter: int = 500,
        tolerance_grad: float = 1e-9,
        tolerance_change: float = 1e-12,
        history_size: int = 20,
        num_threads: int | None = 1,
        precision: str = "float32",
    ) -> None:
        if not l2_grid:
            raise ValueError("probe.l2_grid is empty: give at least one L2 strength")
        self.l2_grid = [float(v) for v in l2_grid]
        self.max_iter, self.history_size = max_iter, history_size
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        if num_threads is not None and num_threads < 1:
            raise ValueError(
                f"probe.num_threads={num_threads}: give a positive count, or null for torch's own"
            )
        self.num_threads = num_threads
        if precision not in ("float32", "float64"):
            raise ValueError(f"probe.precision={precision}: give float32 or float64")
        self.precision = getattr(torch, precision)

    @staticmethod
    def parameters(featurizer: nn.Module, head: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """(fitted, penalised): featurizer params + every Linear's; the Linear weights are penalised."""
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                f"probe=lbfgs needs a head with nn.Linear layers; {type(head).__name__} has none"
            )
        fitted = [p for p in featurizer.parameters() if p.requires_grad]
        fitted += [p for m in linears for p in m.parameters()]
        return fitted, [m.weight for m in linears]

    def objective(self, featurizer: nn.Module, head: nn.Module, data: Features, loss: Objective = SOFTMAX):
        """The training split's objective, features laid out once for the whole grid: the closed form for a
        linear head under cross-entropy, autograd for any other head or loss."""
        if loss is SOFTMAX and linear_path(featurizer, head):
            return LinearObjective(featurizer, head, data.x, data.y, self.precision)
        fitted, penalised = self.parameters(featurizer, head)
        return AutogradObjective(featurizer, head, data.x, data.y, fitted, penalised, loss.loss)

    def solve(self, objective, l2: float) -> dict:
        """Fit in place (float64, eval mode: no dropout) from the modules' current state.

        A linear head is fitted first as its convex problem at the featurizer's current state, whitened
        (``WhitenedHead``: about half the evaluations of the raw problem). A fixed featurizer's fit ends
        there; a weighted sum's joint problem then starts from that head: the convex fit moves the head
        most of the way at a fifth of the cost per evaluation (it reads one clips x dim matrix, not the
        layers' stack). The joint fit stays in the raw coordinates: with the head whitened it stopped on
        float32 rounding short of the raw fit's objective (experiments/throughput/README.md).
        """
        t0 = time.perf_counter()
        head_evaluations = 0
        result = None
        if isinstance(objective, LinearObjective):
            result = self._minimize(objective.head_problem(l2), l2)
            head_evaluations = result.nfev
        if result is None or objective.weighted:
            result = self._minimize(objective, l2)
        return {
            "train/objective": float(result.fun),
            "iterations": int(result.nit),
            "evaluations": int(result.nfev),
            "head_evaluations": head_evaluations,
            "seconds": time.perf_counter() - t0,
        }

    def _minimize(self, objective, l2: float):
        result = minimize(
            objective,
            objective.pack(),
            args=(l2,),
            jac=True,
            method="L-BFGS-B",
            options={
                "maxiter": self.max_iter,
                "gtol": self.tolerance_grad,
                "ftol": self.tolerance_change,
                "maxcor": self.history_size,
            },
        )
        objective.unpack(result.x)
        return result

    @staticmethod
    @torch.no_grad()
    def evaluate(
        featurizer: nn.Module, head: nn.Module, data: Features, objective: Objective = SOFTMAX
    ) -> dict:
        dtype = next(head.parameters()).dtype  # float64 while fitting, float32 after
        outputs = head(featurizer(data.x.to(dtype).transpose(0, 1)))
        return {
            objective.score_name: objective.score(outputs, data.y),
            "loss": float(objective.loss(outputs, data.y)),
        }

    def fit(
        self,
        featurizer: nn.Module,
        head: nn.Module,
        train: Features,
        val: Features | None,
        objective: Objective = SOFTMAX,
    ) -> ProbeResult:
        """Fit every grid value, keep the best on val (in place, back in float32).

        The grid is walked from the strongest L2 to the weakest, each fit starting where the previous
        one ended (a regularisation path, as glmnet and scikit-learn's warm_start do): for a convex
        probe the optimum does not depend on the start, and the weakly regularised fits, the slow
        ones, start close to it.
        """
        if val is None and len(self.l2_grid) > 1:
            raise ValueError(
                "probe=lbfgs chooses the L2 strength on the val split, and this data has none: "
                "give a val split or a single value (probe.l2_grid=[1e-3])"
            )
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            # scipy's L-BFGS-B calls numpy's BLAS on every iteration: left at one thread per core, its
            # threads spin for work a vector of a few thousand entries does not have, which cost 2-3x
            # the objective itself (experiments/throughput/README.md, "Probe speed")
            with threadpool_limits(self.num_threads, user_api="blas"):
                result = self._path(featurizer, head, train, val, objective)
        finally:
            torch.set_num_threads(threads)
        result.seconds = time.perf_counter() - t0
        log.info(
            "probe=lbfgs: l2=%g chosen on val from %s (%.2f s)\n  %s",
            result.l2,
            self.l2_grid,
            result.seconds,
            "\n  ".join(", ".join(f"{k}={v:.4g}" for k, v in r.items()) for r in result.table),
        )
        return result

    def _path(
        self,
        featurizer: nn.Module,
        head: nn.Module,
        train: Features,
        val: Features | None,
        objective: Objective,
    ) -> ProbeResult:
        featurizer.double().eval()
        head.double().eval()
        train, val = train.by_layer(), val and val.by_layer()
        best, best_key, table = None, None, []
        problem = self.objective(featurizer, head, train, objective)
        for l2 in sorted(self.l2_grid, reverse=True):
            row = {"l2": l2, **self.solve(problem, l2)}
            name = objective.score_name
            row[f"train/{name}"] = self.evaluate(featurizer, head, train, objective)[name]
            if val is not None:
                row.update(
                    {f"val/{k}": v for k, v in self.evaluate(featurizer, head, val, objective).items()}
                )
            table.append(row)
            key = (row.get(f"val/{name}", 0.0), -row.get("val/loss", 0.0))
            if best_key is None or key > best_key:
                best_key = key
                best = (l2, copy.deepcopy(featurizer.state_dict()), copy.deepcopy(head.state_dict()))
        featurizer.load_state_dict(best[1])
        head.load_state_dict(best[2])
        featurizer.float().train()
        head.float().train()
        return ProbeResult(l2=best[0], table=table)
