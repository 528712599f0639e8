"""Resolvers that config files may use; registered on ``import glue_lora``, before Hydra resolves."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def lora_or_full(lora_value: Any, full_value: Any, *, _root_: DictConfig) -> Any:
    """``${lora_or_full:5e-4,5e-5}``: the first value for LoRA, the second for full fine-tuning
    (``lora=none``). A recipe uses it where the two need different values, e.g. the learning rate."""
    return full_value if _root_.get("lora") is None else lora_value


def register() -> None:
    if not OmegaConf.has_resolver("lora_or_full"):
        OmegaConf.register_new_resolver("lora_or_full", lora_or_full)
