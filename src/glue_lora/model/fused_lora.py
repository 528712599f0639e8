"""LoRA's update added to the frozen layer's output by one matrix multiply (``model.fused_lora``).

peft computes a LoRA linear layer as ``base(x) + B(A(x)) * scaling``: after the two small matrix
multiplies, one pass over the output to scale the update and one to add it, and the backward pass
goes back through both. :class:`FusedAddVariant` computes ``addmm(base(x), A(x), B^T,
alpha=scaling)`` instead, so the scale and the sum ride on the second multiply. It plugs in through
peft's extension point for LoRA variants (the one DoRA uses), so the weights, their names, the
adapter files, merging and unmerging stay peft's.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear, LoraLayer, LoraVariant


class FusedAddVariant(LoraVariant):
    """Plain LoRA, its update fused into one ``addmm``."""

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        pass

    @staticmethod
    def merge_safe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight - module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def forward(
        module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        lora_b = module.lora_B[active_adapter]
        scaling = module.scaling[active_adapter]
        hidden = module.lora_A[active_adapter](module.lora_dropout[active_adapter](x))
        if result.dtype != hidden.dtype or lora_b.bias is not None:
            return result + lora_b(hidden) * scaling  # peft's own formula
        flat = result.reshape(-1, result.shape[-1])
        fused = torch.addmm(flat, hidden.reshape(-1, hidden.shape[-1]), lora_b.weight.t(), alpha=scaling)
        return fused.view(result.shape)


def fuse_lora_updates(model: torch.nn.Module) -> int:
    """Compute each plain LoRA linear layer of ``model`` with :class:`FusedAddVariant`; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is not Linear:  # quantized and other layer types keep peft's forward
            continue
        for adapter in module.lora_A:
            if adapter not in module.lora_variant:
                module.lora_variant[adapter] = FusedAddVariant()
                count += 1
    return count
