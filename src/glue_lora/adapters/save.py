"""Saving a run's adapter: LoRA weights and head (PEFT layout) or the whole model, its record
(glue_lora.json) and model card, atomically."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from glue_lora.adapters.model_card import CARD, adapter_card, shareable_base
from glue_lora.adapters.record import RECORD, shared_base_name
from glue_lora.data.tasks import TaskSpec
from glue_lora.utils.artifacts import atomic_save_pretrained
from glue_lora.utils.redact import redact


def save_adapter(
    model: torch.nn.Module,
    adapter_dir: Path,
    record: dict[str, Any],
    spec: TaskSpec,
    results: dict[str, Any] | None = None,
) -> None:
    """Save LoRA weights and head (PEFT layout), or the whole model for full fine-tuning.

    ``glue_lora.json`` beside them (``record``, from ``adapters.record.adapter_record``) records
    what eval.py needs to rebuild the base model (the
    local source of its weights too); ``adapter_config.json`` names the base by its Hub id where
    the weights were a packaged copy of it, so the directory loads on another machine. With
    ``results``, a model card (README.md) is written beside them.
    """
    record = redact(record)
    extra_text = {}
    if results is not None:
        extra_text[CARD] = adapter_card(results["config"], spec, results, run_command())
    # The vocabulary is never resized, so peft's "auto" check of the base's config on the Hub (a
    # network call at every save once the base is named by its Hub id) has nothing to find.
    save_kwargs = {"save_embedding_layers": False} if hasattr(model, "peft_config") else None
    with shared_base_name(model, shareable_base(record["model"])):
        atomic_save_pretrained(
            model, adapter_dir, extra_json={RECORD: record}, extra_text=extra_text, save_kwargs=save_kwargs
        )


def run_command() -> str | None:
    """The command line of this run, as Hydra recorded its overrides (None outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    # unresolved, as Hydra saves them: `key=${oc.env:NAME}` must not turn into the secret it names
    overrides = [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]
    return " ".join(["python train.py", *(shlex.quote(o) for o in overrides)])
