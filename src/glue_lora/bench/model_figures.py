"""Figures of the benchmark's model that need no training: memory (LoRA vs full fine-tuning) and
FLOPs per token, computed on the meta device."""

from __future__ import annotations

from typing import Any

from glue_lora.bench.common import Job


def memory_report(job: Job) -> dict[str, Any]:
    """Memory figures of the bench's model and of roberta-base, LoRA vs full fine-tuning (meta device)."""
    import torch
    from omegaconf import open_dict

    from glue_lora.bench.common import compose_config
    from glue_lora.data.tasks import get_task
    from glue_lora.model.build import build_model
    from glue_lora.settings.lora import lora_settings
    from glue_lora.settings.model import ModelSettings
    from glue_lora.utils.memory import memory_figures

    report: dict[str, Any] = {}
    for extra in ([], ["model=roberta_base"]):
        cfg = compose_config(Job(**{**job.__dict__, "overrides": [*job.overrides, *extra]}), "cpu")
        spec = get_task(cfg.task.name)
        entry: dict[str, Any] = {}
        for variant in ("lora", "full"):
            with open_dict(cfg):
                cfg.model.pretrained = cfg.model.get("architecture") is None
                cfg.model.compile = False
                cfg.model.quantize = "none"  # a 4-bit model cannot be built on the meta device
                if variant == "full":
                    cfg.lora = None
            with torch.device("meta"):
                model = ModelSettings.from_config(cfg.model)
                lora = lora_settings(cfg.get("lora"), model.lora_targets)
                entry[variant] = memory_figures(build_model(model, lora, spec, device="meta")).as_dict()
        entry["frozen_weights_mb_bf16"] = entry["lora"]["frozen_params"] * 2 / 2**20
        report[str(cfg.model.name)] = entry
    return report


def model_flops(job: Job, peak_flops: float) -> dict[str, Any]:
    """Model FLOPs per real token of the bench's model (see bench.flops), on the meta device."""
    from omegaconf import OmegaConf

    from glue_lora.bench.common import compose_config
    from glue_lora.bench.flops import flops_report, matmul_weights
    from glue_lora.data.tasks import get_task

    cfg = compose_config(job, "cpu")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return flops_report(matmul_weights(model_cfg, get_task(cfg.task.name).num_labels), peak_flops)
