"""The model of a run: the backbone with its task head, LoRA injected (unless ``lora=none``), LoRA A
initialised as the config asks, fused LoRA and ``torch.compile`` where asked."""

from __future__ import annotations

import torch

from glue_lora.data.tasks import TaskSpec
from glue_lora.model.backbone import build_backbone, maybe_compile
from glue_lora.model.lora import apply_lora, init_lora_a
from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.model import ModelSettings


def build_model(
    model: ModelSettings, lora: LoraSettings | None, spec: TaskSpec, device: str | None = None
) -> torch.nn.Module:
    """The backbone with its task head, wrapped with ``lora`` unless it is None (``lora=none``)."""
    model_cfg = model.config
    backbone = build_backbone(model_cfg, spec.num_labels, spec.is_regression, device=device)
    lora_cfg = lora.as_dict() if lora is not None else None
    wrapped = apply_lora(backbone, lora_cfg, model.lora_targets, model.trained_in_full)
    if lora is not None:
        init_lora_a(wrapped, model_cfg.get("lora_a_init") or "kaiming_uniform")
    if model_cfg.get("fused_lora") and lora is not None:
        from glue_lora.model.fused_lora import fuse_lora_updates

        fuse_lora_updates(wrapped)
    return maybe_compile(wrapped, model_cfg)
