"""The model of a run: the backbone with its task head, LoRA injected (unless ``lora=none``), LoRA A
initialised as the config asks, fused LoRA and ``torch.compile`` where asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from glue_lora.data.tasks import TaskSpec
from glue_lora.model.backbone import build_backbone, maybe_compile
from glue_lora.model.data_driven_starts import computes_start
from glue_lora.model.lora import init_lora_a
from glue_lora.model.methods import apply_method
from glue_lora.model.quantization import RunDevice
from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.method import MethodSettings, method_settings
from glue_lora.settings.model import ModelSettings


def build_model(
    model: ModelSettings,
    lora: LoraSettings | None,
    spec: TaskSpec,
    device: str | None = None,
    method: MethodSettings | None = None,
    calibration: Sequence[Mapping[str, torch.Tensor]] | None = None,
    run: RunDevice | None = None,
    start_device: str | None = None,
) -> torch.nn.Module:
    """The backbone with its task head, made trainable by ``method`` (default: LoRA with ``lora``,
    or full fine-tuning when ``lora`` is None); ``calibration``: train batches for a data-driven
    start (EVA, CorDA, LoRA-GA); ``run``: the precision and devices a 4-bit model is loaded for.
    ``start_device``: where a computed start (those and PiSSA's or OLoRA's decomposition) runs, the
    rank's own GPU, rather than on every rank's CPU."""
    model_cfg = model.config
    method = method or method_settings(None, lora)
    backbone = build_backbone(model_cfg, spec.num_labels, spec.is_regression, device=device, run=run)
    if (
        start_device is not None
        and computes_start(method)
        and getattr(backbone, "hf_quantizer", None) is None
    ):
        # Lightning moves the model there anyway; every rank computes the same start from the same
        # batches, and DDP broadcasts rank 0's weights (frozen ones included) when it wraps the model.
        backbone.to(start_device)
        if calibration is not None:
            calibration = [{k: v.to(start_device) for k, v in batch.items()} for batch in calibration]
    wrapped = apply_method(backbone, method, lora, model.lora_targets, model.trained_in_full, calibration)
    plain_lora = method.peft_type == "lora" and not method.peft_options.get("init_lora_weights")
    if plain_lora:
        # A data- or weight-derived start (PiSSA, OLoRA) is the method itself: not re-drawn.
        init_lora_a(wrapped, model_cfg.get("lora_a_init") or "kaiming_uniform")
    if model_cfg.get("fused_lora") and plain_lora and not method.peft_options:
        from glue_lora.model.fused_lora import fuse_lora_updates

        fuse_lora_updates(wrapped)
    return maybe_compile(wrapped, model_cfg)
