"""Model FLOPs utilisation (MFU) of a LoRA training step, for the benchmark's report.

The frozen network does a forward pass (2 FLOPs per weight and token: a multiply and an add) and a
backward pass for the activations' gradients only (another 2 per weight and token); the frozen
weights get no gradient, so the third 2N of full training (6N) is not done. LoRA's own weights are
under 1% of the network and are left out, as are the attention scores (about 4 x layers x length
x hidden per token, a few % at SST-2 lengths, more at 512) and gradient checkpointing's recomputed
forward (it is not useful work). The figure is therefore a slight underestimate:

    model FLOPs per real token = 4 x N, N = weights of the network's matrix multiplies
    MFU = 4 x N x real (non-padding) tokens/s / the device's peak dense FLOP/s

Padding tokens count as no work, so a setting that pads more gets a lower MFU for the same speed.
"""

from __future__ import annotations

from typing import Any

FORMULA = (
    "MFU = 4 x N x real tokens/s / peak FLOP/s; N = weights of the matrix multiplies (embeddings, "
    "attention scores, LoRA and recomputation left out): forward 2N + activation gradients 2N per "
    "token, frozen weights get no gradient"
)
# NVIDIA's dense bf16 tensor-core peak of the H100/H200 SXM (without sparsity).
H100_BF16_PEAK_FLOPS = 989e12


def matmul_weights(model_cfg: dict[str, Any], num_labels: int) -> int:
    """Weights of every ``nn.Linear`` of the model (head included), counted on the meta device."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from glue_lora.model.backbone import build_config

    model_cfg = {**model_cfg, "cls_dropout": None}
    if model_cfg.get("architecture") is not None:
        model_cfg["pretrained"] = False  # the shape facts suffice; no weights are read
    config = build_config(model_cfg, num_labels, regression=False)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def flops_report(matmul_params: int, peak_flops: float) -> dict[str, Any]:
    return {
        "matmul_params": matmul_params,
        "flops_per_real_token": 4 * matmul_params,
        "peak_flops": peak_flops,
        "formula": FORMULA,
    }


def add_mfu(runs: list[dict[str, Any]], flops: dict[str, Any]) -> None:
    """Adds ``mfu`` to every throughput run that has real tokens/s."""
    for run in runs:
        if run.get("real_tokens_per_s") is not None:
            run["mfu"] = flops["flops_per_real_token"] * run["real_tokens_per_s"] / flops["peak_flops"]
