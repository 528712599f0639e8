"""The one inference timer: seconds of a model's forward passes, CUDA work included.

``glue-lora merge --compare-speed`` and the benchmark's inference setting both time with it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


def forward_seconds(
    model: torch.nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> float:
    """Seconds of one inference pass of ``model`` over ``batches``; on CUDA, synchronised at both ends."""
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), autocast():
        for batch in batches:
            model(**batch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_forward_seconds(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], steps: int = 20, warmup: int = 3
) -> float:
    """Median seconds of one forward pass of ``model`` on ``inputs``, after ``warmup`` untimed passes."""
    times = [forward_seconds(model, [inputs]) for _ in range(warmup + steps)]
    return statistics.median(times[warmup:])
