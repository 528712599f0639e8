"""Memory figures of a training run: computed from the built model, or measured in the process.

The computed figures work on a model built on the meta device (no weights allocated), so those of
roberta-base or DeBERTa-v2-xxlarge cost nothing. Only torch is imported here, so the benchmark's
peer process measures itself without loading Lightning.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

# AdamW keeps two fp32 moments (exp_avg, exp_avg_sq) per trainable parameter.
ADAMW_STATES = 2
FP32_BYTES = 4
MB = 2**20


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adamw_state_mb(trainable: int, states_per_param: int = ADAMW_STATES) -> float:
    """AdamW state of ``trainable`` fp32 parameters, in MiB (e.g. roberta-base full: ~951 MiB)."""
    return trainable * states_per_param * FP32_BYTES / MB


def optimizer_state_bytes(model: nn.Module, states_per_param: int = ADAMW_STATES) -> int:
    """Bytes of AdamW state for ``model``: only trainable parameters have any."""
    return _trainable(model) * states_per_param * FP32_BYTES


def measured_optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes held in an optimizer's state tensors (AdamW: two moments per trained parameter)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate / Lightning wrappers
    return sum(
        value.numel() * value.element_size()
        for state in inner.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def host_peak_mb() -> float:
    """The process's peak resident set size, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def device_peak_mb(device: torch.device | str | None) -> float | None:
    """Peak memory allocated on a CUDA ``device`` since its last reset, in MiB; None off CUDA."""
    if device is None or torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / MB


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    peak = device_peak_mb(device)
    return host_peak_mb() if peak is None else peak


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
