"""Does a saved adapter fit the task and base model it is about to be used with?

An adapter trained for another task has a head of another size or meaning, and LoRA weights of
another base model have other shapes, or (worse) the same shapes and silently wrong numbers.
``check_adapter_matches`` compares the adapter's ``glue_lora.json`` with the requested task and
model config before anything is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glue_lora.errors import ConfigError
from glue_lora.tasks import get_task

META_FILE = "glue_lora.json"
# Model settings that identify the base weights (the name of the config file does not).
IDENTITY_KEYS = ("hub_id", "name_or_path", "package", "pretrained")
# Shape facts of a randomly initialised model, which must match as well.
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)


def read_adapter_meta(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``glue_lora.json`` that train.py writes beside the adapter weights."""
    path = Path(adapter_dir) / META_FILE
    if not path.is_file():
        raise ConfigError(
            f"{adapter_dir} has no {META_FILE}, so it is not an adapter written by glue-lora's "
            "train.py. Give the adapter/ directory of a training run."
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); the adapter directory is damaged.") from None


def _base_identity(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    identity = {k: model_cfg.get(k) for k in IDENTITY_KEYS}
    identity["pretrained"] = bool(model_cfg.get("pretrained", True))
    if not identity["pretrained"]:
        architecture = model_cfg.get("architecture") or {}
        identity.update({f"architecture.{k}": architecture.get(k) for k in ARCHITECTURE_KEYS})
    return identity


def check_adapter_matches(adapter_meta: Mapping[str, Any], task: str, model_cfg: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` if the adapter was trained for another task or another base model.

    ``adapter_meta`` is the adapter's ``glue_lora.json`` (``read_adapter_meta``), ``task`` the
    requested task name, ``model_cfg`` the requested ``model`` config group as a plain dict.
    """
    spec = get_task(task)
    trained_task = adapter_meta.get("task")
    if trained_task != spec.name:
        raise ConfigError(
            f"The adapter was trained for task {trained_task!r}, not {spec.name!r}: its head predicts "
            f"{trained_task}'s labels. Use task={trained_task} with this adapter, or an adapter "
            f"trained on {spec.name}."
        )
    labels = list(spec.label_names) if spec.label_names else None
    if adapter_meta.get("label_names") != labels:
        raise ConfigError(
            f"The adapter's labels {adapter_meta.get('label_names')} differ from task {spec.name}'s "
            f"labels {labels}: predictions would be mapped to the wrong classes. Re-train the adapter "
            "with this version of glue-lora."
        )
    trained_model = adapter_meta.get("model") or {}
    mine, theirs = _base_identity(model_cfg), _base_identity(trained_model)
    differ = [f"{k}: adapter {theirs[k]!r}, requested {mine[k]!r}" for k in mine if mine[k] != theirs.get(k)]
    if differ:
        raise ConfigError(
            f"The adapter was trained on the base model {trained_model.get('name')!r}, which differs from "
            f"the requested model {model_cfg.get('name')!r} ({'; '.join(differ)}). LoRA weights only fit "
            f"the base weights they were trained with: use model={trained_model.get('name')} (with the "
            "same model settings), or an adapter trained on the requested model."
        )
