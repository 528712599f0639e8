"""Memory a training run needs beyond the frozen weights, computed from the built model.

Works on a model built on the meta device (no weights allocated), so the figures for roberta-base
or DeBERTa-v2-xxlarge cost nothing to compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

# AdamW keeps two fp32 moments (exp_avg, exp_avg_sq) per trainable parameter.
ADAMW_STATES = 2
FP32_BYTES = 4
MB = 2**20


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def optimizer_state_bytes(model: nn.Module, states_per_param: int = ADAMW_STATES) -> int:
    """Bytes of AdamW state for ``model``: only trainable parameters have any."""
    return _trainable(model) * states_per_param * FP32_BYTES


@dataclass(frozen=True)
class MemoryFigures:
    trainable_params: int
    frozen_params: int
    frozen_weights_mb: float
    optimizer_state_mb: float
    adapter_mb: float  # trained weights in fp32: LoRA and head (or every weight when fully fine-tuned)
    checkpoint_mb: float  # trained weights + optimizer state, what a resumable checkpoint holds

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def memory_figures(model: nn.Module) -> MemoryFigures:
    """The sizes a run of ``model`` produces, whether it holds LoRA layers or is fully trained."""
    trainable = _trainable(model)
    weights = trainable * FP32_BYTES
    state = optimizer_state_bytes(model)
    # peft keeps a frozen copy of each fully trained head (original_module): not counted as frozen.
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad and ".original_module." not in n]
    return MemoryFigures(
        trainable_params=trainable,
        frozen_params=sum(p.numel() for p in frozen),
        frozen_weights_mb=sum(p.numel() * p.element_size() for p in frozen) / MB,
        optimizer_state_mb=state / MB,
        adapter_mb=weights / MB,
        checkpoint_mb=(weights + state) / MB,
    )
