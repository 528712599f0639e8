"""The model of a run: the backbone with its task head, LoRA injected (unless ``lora=none``), LoRA A
initialised as the config asks, fused LoRA and ``torch.compile`` where asked."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from glue_lora.data.tasks import TaskSpec
from glue_lora.model.backbone import build_backbone, maybe_compile
from glue_lora.model.lora import apply_lora, init_lora_a
from glue_lora.settings.lora import lora_dict


def build_model(cfg: DictConfig, spec: TaskSpec, device: str | None = None) -> torch.nn.Module:
    """The backbone with its task head, wrapped with LoRA unless ``lora=none``."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    backbone = build_backbone(model_cfg, spec.num_labels, spec.is_regression, device=device)
    lora = lora_dict(cfg)
    model = apply_lora(backbone, lora, model_cfg["lora_targets"], model_cfg["trained_in_full"])
    if lora is not None:
        init_lora_a(model, model_cfg.get("lora_a_init") or "kaiming_uniform")
    if model_cfg.get("fused_lora") and lora is not None:
        from glue_lora.model.fused_lora import fuse_lora_updates

        fuse_lora_updates(model)
    return maybe_compile(model, model_cfg)
