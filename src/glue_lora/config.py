"""Checks on the composed config that Hydra's composition cannot express (ranges, consistency)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from glue_lora.errors import ConfigError
from glue_lora.lora import validate_lora_config
from glue_lora.regularizers import validate as validate_regularizers
from glue_lora.tasks import get_task


def _positive_int(value: Any, key: str, example: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            f"{key}={value!r} is invalid: it must be a positive integer (e.g. {key}={example})."
        )


def lora_dict(cfg: DictConfig) -> dict[str, Any] | None:
    """The ``lora`` group as a plain dict, or None for full fine-tuning (``lora=none``)."""
    if cfg.get("lora") is None:
        return None
    lora = OmegaConf.to_container(cfg.lora, resolve=True)
    lora["targets"] = list(lora.get("targets") or cfg.model.lora_targets)
    return lora


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming the key and the fix for the first invalid value found."""
    get_task(cfg.task.name)
    validate_lora_config(lora_dict(cfg))
    validate_regularizers(cfg.get("train"))
    _positive_int(cfg.data.batch_size, "data.batch_size", "32")
    if cfg.data.get("eval_batch_size") is not None:
        _positive_int(cfg.data.eval_batch_size, "data.eval_batch_size", "128")
    _positive_int(cfg.data.max_length, "data.max_length", "128")
    lr = cfg.optimizer.get("lr")
    if not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(
            f"optimizer.lr={lr!r} is invalid: the learning rate must be positive (e.g. optimizer.lr=5e-4)."
        )
    ratio = cfg.schedule.get("warmup_ratio") or 0.0
    if not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(f"schedule.warmup_ratio={ratio!r} is invalid: it must be in [0, 1) (e.g. 0.06).")
    if cfg.schedule.get("name", "linear") not in ("linear", "cosine", "constant"):
        raise ConfigError(f"schedule.name={cfg.schedule.name!r} is unknown: use linear, cosine or constant.")
    fraction = cfg.task.get("val_fraction")
    if fraction is not None and not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"task.val_fraction={fraction!r} is invalid: it must be in (0, 1) (e.g. 0.05).")
