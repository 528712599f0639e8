"""``model.quantize=4bit``: frozen weights in 4-bit NF4 through bitsandbytes (QLoRA), on a GPU.

transformers places a quantized model where ``device_map`` says as it loads it, before Lightning
has set each rank's CUDA device, so ``torch.cuda.current_device()`` is GPU 0 on every rank. The
device is read from the launcher's local rank instead (``trainer.devices=[2,3]``: the local rank's
entry, as Lightning maps them). The 4-bit layers compute in the run's half precision (fp16 under
16-mixed, bf16 under bf16-mixed), in fp32 otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from glue_lora.utils.errors import ConfigError
from glue_lora.utils.ranks import local_device_index

COMPUTE_DTYPES = {
    "16-mixed": torch.float16,
    "16": torch.float16,
    "bf16-mixed": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class RunDevice:
    """What a model is loaded for: the run's ``trainer.precision`` and ``trainer.devices``."""

    precision: str = "32-true"
    devices: Any = 1

    @property
    def compute_dtype(self) -> torch.dtype:
        return COMPUTE_DTYPES.get(str(self.precision), torch.float32)

    def cuda_device(self, env: Mapping[str, str] = os.environ) -> int:
        """The CUDA device index of this rank: its entry of a device list, else its local rank."""
        return local_device_index(self.devices, env)


def check_quantization(model_cfg: Mapping[str, Any]) -> bool:
    """True for ``model.quantize=4bit`` where it can run; refused where it cannot; False for none."""
    quantize = model_cfg.get("quantize") or "none"
    if quantize == "none":
        return False
    if quantize != "4bit":
        raise ConfigError(f"model.quantize={quantize} is not supported. Use none or 4bit (NF4, QLoRA).")
    if not torch.cuda.is_available():
        raise ConfigError(
            "model.quantize=4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels run on the GPU). Run "
            "on a GPU machine, or set model.quantize=none (model.frozen_dtype=bfloat16 halves the "
            "frozen weights' memory without a GPU-only kernel)."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "model.quantize=4bit needs the bitsandbytes package: `pip install bitsandbytes`, or set "
            "model.quantize=none."
        ) from None
    return True


def quantized_loading_kwargs(run: RunDevice, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The ``from_pretrained`` arguments that load a model in NF4 onto this rank's GPU."""
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=run.compute_dtype,
    )
    return {"quantization_config": config, "device_map": {"": run.cuda_device(env)}}


def quantize_random_model(model: torch.nn.Module, run: RunDevice) -> torch.nn.Module:
    """Random weights go through a temporary checkpoint, so transformers' own loader quantizes them."""
    import tempfile

    from transformers import AutoModelForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        model.to(torch.bfloat16).save_pretrained(tmp)
        return AutoModelForSequenceClassification.from_pretrained(tmp, **quantized_loading_kwargs(run))
