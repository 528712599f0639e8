"""The ``lora`` config group: as the plain dict the rest of the code reads, and its short label."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def lora_dict(cfg: DictConfig) -> dict[str, Any] | None:
    """The ``lora`` group as a plain dict, or None for full fine-tuning (``lora=none``)."""
    if cfg.get("lora") is None:
        return None
    lora = OmegaConf.to_container(cfg.lora, resolve=True)
    lora["targets"] = list(lora.get("targets") or cfg.model.lora_targets)
    return lora


def lora_label(lora: dict[str, Any] | None) -> str:
    """Short name of a LoRA setting: ``r8-a16`` (rank 8, alpha 16), or ``full`` for full fine-tuning."""
    if lora is None:
        return "full"
    alpha = lora.get("alpha")
    alpha = int(alpha) if isinstance(alpha, float) and alpha.is_integer() else alpha
    return f"r{lora.get('r')}-a{alpha}"
