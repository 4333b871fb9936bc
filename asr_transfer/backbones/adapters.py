"""Parameter-efficient fine-tuning: LoRA (peft) and Houlsby bottleneck adapters inside a backbone.

An adapter is a small spec object (built from ``conf/adapter/*.yaml`` into ``backbone.adapter``)
that the backbone attaches to its own transformer layers once, while it is constructed. The base
weights stay frozen (``backbone.freeze`` still decides which of them train); the adapter's own
parameters always train. Targets are module paths *relative to one transformer layer*, matched
exactly; ``target_modules: null`` takes the backbone family's default (``Backbone.adapter_targets``).
"""

from __future__ import annotations

from torch import Tensor, nn


def layer_targets(backbone, kind: str, names: list[str] | None) -> list[tuple[str, nn.Module]]:
    """(full name inside ``backbone.model``, module) of every target in every transformer layer."""
    names = list(names or backbone.adapter_targets.get(kind, ()))
    if not names:
        raise ValueError(
            f"backbone.adapter ({kind}): {type(backbone).__name__} names no default adapter targets; "
            "set backbone.adapter.target_modules to module paths inside one transformer layer"
        )
    full = {id(m): n for n, m in backbone.model.named_modules()}
    found = []
    for i, layer in enumerate(backbone.transformer_layers()):
        inside = dict(layer.named_modules())
        hits = [(f"{full[id(layer)]}.{n}", inside[n]) for n in names if n in inside]
        if not hits:
            raise ValueError(
                f"backbone.adapter.target_modules={names}: none of them is in transformer layer {i} "
                f"of {type(backbone).__name__} (it has {sorted(n for n in inside if n)[:12]} ...)"
            )
        found += hits
    return found


class LoRA:
    """Low-rank updates ``W + (alpha / rank) * B A`` on the target linears (peft's LoRA layers).

    ``B`` starts at zero, so the adapted model starts as the pretrained one. ``merge`` folds the
    updates into the weights (for prediction: same outputs, no extra matmuls).
    """

    kind = "lora"

    def __init__(
        self, rank: int = 8, alpha: float = 16, dropout: float = 0.0, target_modules: list[str] | None = None
    ):
        if rank < 1:
            raise ValueError(f"backbone.adapter.rank={rank}: use a rank >= 1")
        self.rank, self.alpha, self.dropout = int(rank), float(alpha), float(dropout)
        self.target_modules = target_modules

    def __repr__(self) -> str:
        return f"LoRA(rank={self.rank}, alpha={self.alpha:g}, dropout={self.dropout:g})"

    def attach(self, backbone) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        targets = [name for name, _ in layer_targets(backbone, self.kind, self.target_modules)]
        config = LoraConfig(
            r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets
        )
        inject_adapter_in_model(config, backbone.model)

    @staticmethod
    def modules(backbone) -> list[nn.Module]:
        from peft.tuners.lora import LoraLayer

        return [m for m in backbone.model.modules() if isinstance(m, LoraLayer)]

    def merge(self, backbone) -> None:
        """Fold every LoRA update into its base weight and put the plain base layer back in its place."""
        parents = dict(backbone.model.named_modules())
        lora = {id(m) for m in self.modules(backbone)}
        for name, module in list(parents.items()):
            if id(module) in lora:
                module.merge()
                parent, _, child = name.rpartition(".")
                setattr(parents[parent], child, module.get_base_layer())


class BottleneckAdapter(nn.Module):
    """Houlsby et al. (2019): ``x + up(gelu(down(x)))``; ``up`` starts at zero (identity at init).

    x: (batch, frames, dim) -> same shape.
    """

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.up = nn.Linear(size, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


def _adapt_output(module: nn.Module, args, output):
    # Attention modules return (states, weights / position bias ...): adapt the states only.
    if isinstance(output, tuple):
        return (module.bottleneck_adapter(output[0]), *output[1:])
    return module.bottleneck_adapter(output)


class Bottleneck:
    """Residual bottleneck adapters on the outputs of each layer's attention and feed-forward blocks
    (before the residual add, where Houlsby places them)."""

    kind = "bottleneck"

    def __init__(self, size: int = 64, target_modules: list[str] | None = None) -> None:
        if size < 1:
            raise ValueError(f"backbone.adapter.size={size}: use a bottleneck size >= 1")
        self.size = int(size)
        self.target_modules = target_modules

    def __repr__(self) -> str:
        return f"Bottleneck(size={self.size})"

    def attach(self, backbone) -> None:
        for _, module in layer_targets(backbone, self.kind, self.target_modules):
            # A child of the adapted module (its state dict key says where it sits), run by a hook:
            # the layer's own forward, and everything that reads the module's attributes, stay as they are.
            module.bottleneck_adapter = BottleneckAdapter(backbone.hidden_size, self.size)
            module.register_forward_hook(_adapt_output)

    @staticmethod
    def modules(backbone) -> list[nn.Module]:
        return [m for m in backbone.model.modules() if isinstance(m, BottleneckAdapter)]

    def merge(self, backbone) -> None:
        raise ValueError(
            "adapter.merge=true folds LoRA only: bottleneck adapters are non-linear and stay as they are"
        )


def parameter_counts(module: nn.Module) -> dict[str, float]:
    """Trainable and total parameters (count and %), as logged and written to metrics.json. The total
    includes the frozen weights a weightless ``CardBackbone`` stands in for (``absent_parameters``)."""
    absent = sum(getattr(m, "absent_parameters", 0) for m in module.modules())
    total = sum(p.numel() for p in module.parameters()) + absent
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {
        "params/trainable": float(trainable),
        "params/total": float(total),
        "params/trainable_pct": 100.0 * trainable / max(total, 1),
    }
