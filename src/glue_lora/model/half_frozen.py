"""Trained weights in fp32 where the frozen ones are stored in a half dtype (``model.frozen_dtype``).

The LoRA methods get this from ``lora.train_in_fp32``: peft casts LoRA's input itself, and the head
gets fp32 inputs. The weight-subset methods (full fine-tuning, BitFit, head only) train weights of
the backbone's own modules, so a module can hold a trained fp32 bias beside its frozen half weight,
which neither ``F.linear`` nor ``F.layer_norm`` accepts (under autocast neither). Such a module
computes in fp32: its frozen weights are upcast too (they are the few that share a module with a
trained one) and it casts its inputs to fp32 and its outputs back to the dtype they came in, so
the modules around it see the half dtype they expect. AdamW then updates fp32 weights only, and
fp16 AMP finds no fp16 gradient to unscale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from glue_lora.model.lora import train_in_fp32

HALF = (torch.float16, torch.bfloat16)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype) for v in value)
    return value


def _first_float_dtype(args: tuple, kwargs: dict) -> torch.dtype | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype
    return None


def _compute_in_fp32(module: nn.Module) -> None:
    """``module`` runs in fp32 and hands its outputs back in its inputs' dtype."""
    incoming: list[torch.dtype | None] = [None]

    def before(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        incoming[0] = _first_float_dtype(args, kwargs)
        return _cast(args, torch.float32), {k: _cast(v, torch.float32) for k, v in kwargs.items()}

    def after(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        return output if incoming[0] is None else _cast(output, incoming[0])

    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True)


def train_own_weights_in_fp32(model: nn.Module, trained_in_full: Sequence[str]) -> nn.Module:
    """Every trained weight of ``model`` (not wrapped by peft) in fp32, and a forward that runs."""
    frozen_half = any(not p.requires_grad and p.dtype in HALF for p in model.parameters())
    train_in_fp32(model, trained_in_full)  # trained weights upcast; the head gets fp32 inputs
    if not frozen_half:
        return model
    for name, module in model.named_modules():
        if set(name.split(".")) & set(trained_in_full):
            continue  # the head computes in fp32 already, and its logits stay fp32
        own = list(module.parameters(recurse=False))
        if any(p.requires_grad for p in own) and any(p.dtype in HALF for p in own):
            for p in own:
                p.data = p.data.float()
            _compute_in_fp32(module)
    return model
