"""Dropout with a cheaper random mask on CPU, for the hidden states and the attention probabilities.

On a CPU, ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which takes a fast
(MKL) path only on Intel processors; elsewhere it costs about 7 ns per element, and training MiniLM
with its twenty dropouts per step spends about a tenth of the step there. :func:`fast_dropout`
draws the same mask from full-range 64-bit integers of torch's own generator, 32 bits per element
(keep when the draw is at or above ``p`` of the 32-bit range), which is about three times cheaper
on every x86 CPU. The keep probability matches ``1 - p`` to 2**-32, the mask is seeded by
``torch.manual_seed`` like every other draw, and the forward and backward pass scale by
``1 / (1 - p)`` exactly as torch does. Other devices (CUDA has a fused dropout kernel) and eval
mode go straight to ``torch.nn.functional.dropout``.

:func:`use_fast_dropout` puts it into a built model: every ``nn.Dropout`` module becomes a
:class:`FastDropout` (no weights change, ``state_dict`` keys are untouched), and models that
compute attention through transformers' attention interface (BERT, RoBERTa) get
:func:`sdpa_with_fast_dropout`, which runs SDPA except when training with attention dropout on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# The name of :func:`sdpa_with_fast_dropout` in transformers' attention and mask registries.
ATTENTION_NAME = "sdpa_fast_dropout"


class _MaskAndScale(torch.autograd.Function):
    """``x * mask / (1 - p)``; the backward pass applies the same bool mask and scale."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.ops.aten.native_dropout_backward(x, keep, scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.ops.aten.native_dropout_backward(grad, keep, ctx.scale), None, None


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability ``1 - p`` (to 2**-32)."""
    count = shape.numel()
    words = torch.empty((count + 1) // 2, dtype=torch.int64).random_(-(2**63), None)
    draws = words.view(torch.int32)[:count].view(shape)  # uniform over the whole int32 range
    return draws >= round(p * 2**32) - 2**31


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)`` with a cheaper mask on CPU."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return _MaskAndScale.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def sdpa_with_fast_dropout(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention; training on CPU with dropout, the same math in plain ops.

    SDPA has no CPU kernel with dropout: it falls back to its own plain-op path, which draws the
    mask with ``bernoulli_`` and copies its inputs for a masked softmax that guards rows with no
    key. Padding masks always leave [CLS], so that guard is not needed here.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or not module.training or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query * scale, key.transpose(2, 3))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # SDPA's masks: True where attention is allowed
            scores = scores.masked_fill(attention_mask.logical_not(), torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def register_attention() -> None:
    """Register :func:`sdpa_with_fast_dropout` (with SDPA's masks) under :data:`ATTENTION_NAME`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, sdpa_with_fast_dropout)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Swap every ``nn.Dropout`` of ``model`` for :class:`FastDropout`; SDPA attention for ours."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
    if getattr(getattr(model, "config", None), "_attn_implementation", None) != "sdpa":
        return model  # eager or the model's own attention: its dropout modules were swapped above
    try:
        register_attention()
    except ImportError:  # transformers before its attention interface: SDPA keeps its own dropout
        return model
    model.set_attn_implementation(ATTENTION_NAME)
    return model
