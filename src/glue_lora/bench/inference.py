"""Inference speed of the base model, the model with LoRA layers (unmerged), and with LoRA merged.

Merging folds ``B @ A * scaling`` into the frozen weights (peft's ``merge_and_unload``), so the
merged model has the base model's shape and should run at its speed. The three models score the
same dev batches in turn, several rounds, and the median of each is reported.
"""

from __future__ import annotations

import copy
import statistics
from contextlib import nullcontext
from typing import Any

import torch
from omegaconf import OmegaConf

from glue_lora.bench.common import Job, compose_config, resolve_device
from glue_lora.data.datamodule import datamodule_from_settings
from glue_lora.data.tasks import get_task
from glue_lora.model.backbone import build_backbone, build_tokenizer
from glue_lora.model.lora import apply_lora
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import lora_settings
from glue_lora.utils.timing import forward_seconds


def run_inference(job: Job) -> dict[str, Any]:
    device = resolve_device(job.device)
    cfg = compose_config(job, device)
    spec = get_task(cfg.task.name)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(cfg.seed)

    base = build_backbone(model_cfg, spec.num_labels, spec.is_regression)
    tokenizer = build_tokenizer(model_cfg, base.config)
    datamodule = datamodule_from_settings(
        DataSettings.for_training(cfg.data, cfg.task, cfg.seed), spec, tokenizer
    )
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()[0]
    keep = ("input_ids", "attention_mask", "token_type_ids")
    batches = [{k: v.to(device) for k, v in b.items() if k in keep} for b in loader]
    rows = sum(b["input_ids"].shape[0] for b in batches)

    lora = lora_settings(cfg.get("lora"), model_cfg["lora_targets"])
    if lora is None:
        raise SystemExit("the inference benchmark compares LoRA with its base model: leave lora= set")
    unmerged = apply_lora(
        copy.deepcopy(base), lora.as_dict(), model_cfg["lora_targets"], model_cfg["trained_in_full"]
    )
    with torch.no_grad():
        # LoRA's B starts at zero; trained values make the merge change the weights.
        for name, p in unmerged.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    merged = copy.deepcopy(unmerged).merge_and_unload()
    models = {"base": base, "unmerged": unmerged, "merged": merged}
    for model in models.values():
        model.to(device).eval()

    bf16 = device == "cuda" and str(cfg.trainer.precision).startswith("bf16")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
    with torch.inference_mode(), autocast():
        diff = (unmerged(**batches[0]).logits.float() - merged(**batches[0]).logits.float()).abs().max()
    for model in models.values():  # warm-up: first calls allocate and pick kernels
        forward_seconds(model, batches[:2], autocast)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for round_ in range(job.inference_rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            seconds[name].append(forward_seconds(models[name], batches, autocast))
    speed = {name: rows / statistics.median(s) for name, s in seconds.items()}
    return {
        "rows": rows,
        "rounds": job.inference_rounds,
        "base_samples_per_s": speed["base"],
        "unmerged_samples_per_s": speed["unmerged"],
        "merged_samples_per_s": speed["merged"],
        "merged_vs_base": speed["merged"] / speed["base"],
        "unmerged_vs_base": speed["unmerged"] / speed["base"],
        "merged_max_abs_logit_diff": float(diff),
        "spread_pct": {name: 100 * (max(s) - min(s)) / statistics.median(s) for name, s in seconds.items()},
    }
