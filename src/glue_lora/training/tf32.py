"""TF32 matrix multiplies for fp32 runs on GPUs that have them (compute capability 8.0+).

PyTorch multiplies fp32 matrices in full fp32 unless told otherwise; on A100/H100 TF32 is several
times faster at a 10-bit mantissa per product (sums stay fp32), which fine-tuning does not notice.
Mixed-precision runs multiply in fp16/bf16 anyway. ``tf32=false`` keeps full fp32.
"""

from __future__ import annotations

from typing import Any

import torch

TF32_CAPABILITY = (8, 0)


def set_matmul_precision(tf32: bool, fp32_run: bool, accelerator: str, cuda: Any = torch.cuda) -> str | None:
    """Set torch's fp32 matmul precision for this run; a line for the log, None where nothing applies."""
    if not fp32_run or accelerator not in ("auto", "gpu", "cuda") or not cuda.is_available():
        return None
    capability = tuple(cuda.get_device_capability())
    if capability < TF32_CAPABILITY:
        return None
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    name = ".".join(map(str, capability))
    if tf32:
        return (
            f"fp32 matrix multiplies in TF32 on this GPU (compute capability {name}); tf32=false: full fp32"
        )
    return f"fp32 matrix multiplies in full fp32 (tf32=false), though this GPU has TF32 ({name})"
