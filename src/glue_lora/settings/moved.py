"""Config values that name our code by its import path, and the path it has had since the package
was split into subpackages; config keys that moved (``train.*`` -> ``regularizer.*``); the
``method`` group, added since.

A run started before the split recorded, e.g., ``optimizer._target_:
glue_lora.reference_adamw.ReferenceAdamW`` in its checkpoint and results.json; the same optimizer
is now ``glue_lora.training.reference_adamw.ReferenceAdamW``. Resuming such a run (or re-running
its sweep with ``resume=true``) compares the two as the same setting; a config that still names
the old path is refused with the new one.
"""

from __future__ import annotations

from typing import Any

MOVED_TARGETS = {
    "glue_lora.reference_adamw.ReferenceAdamW": "glue_lora.training.reference_adamw.ReferenceAdamW",
    "glue_lora.csv_logger.CSVLogger": "glue_lora.training.csv_logger.CSVLogger",
    "glue_lora.hydra_callbacks.ProtectRunDir": "glue_lora.training.hydra_callbacks.ProtectRunDir",
    "glue_lora.hydra_callbacks.SweepSummary": "glue_lora.training.hydra_callbacks.SweepSummary",
    "glue_lora.hydra_callbacks.OneGpuPerJob": "glue_lora.training.hydra_callbacks.OneGpuPerJob",
}


def current_target(value: Any) -> Any:
    """The import path that ``value`` (a ``_target_``) has now; any other value as it is."""
    return MOVED_TARGETS.get(value, value) if isinstance(value, str) else value


# Config keys that moved: old prefix -> new prefix. train.yaml keeps the old node with null values,
# so that an old override (train.rdrop_alpha=1) composes and is then refused naming the new key.
MOVED_KEYS = {"train": "regularizer"}


def current_key(key: str) -> str:
    """The dotted config key that ``key`` is now (``train.rdrop_alpha`` -> ``regularizer.rdrop_alpha``)."""
    head, _, rest = key.partition(".")
    return f"{MOVED_KEYS[head]}.{rest}" if head in MOVED_KEYS and rest else key


def _set_values(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for key, item in value.items() for kv in _set_values(item, f"{prefix}.{key}")]
    return [] if value is None else [(prefix, value)]


def check_moved_keys(plain: dict[str, Any]) -> None:
    """Refuse a value set under a moved key, naming its new key (``plain``: the resolved config)."""
    from glue_lora.utils.errors import ConfigError

    for old, new in MOVED_KEYS.items():
        for key, value in _set_values(plain.get(old), old):
            raise ConfigError(
                f"{key} is now {current_key(key)}: the settings under {old}: moved to the {new} config "
                f"group (conf/{new}/). Write {current_key(key)}={value} on the command line or in the "
                "experiment file instead."
            )


def without_moved_keys(plain: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without the placeholders of moved keys (what runs record)."""
    return {k: v for k, v in plain.items() if k not in MOVED_KEYS}


def with_method_group(recorded: dict[str, Any], today: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` with today's ``method`` group where it has none and today's method is the one
    its absence meant (LoRA; full fine-tuning with ``lora`` null), so the two compare as the same run."""
    from glue_lora.settings.method import method_settings
    from glue_lora.utils.errors import ConfigError

    if "method" in recorded or "method" not in today:
        return recorded
    try:
        same = method_settings(today["method"], today.get("lora")) == method_settings(
            None, recorded.get("lora")
        )
    except ConfigError:
        same = False
    return {**recorded, "method": today["method"]} if same else recorded
