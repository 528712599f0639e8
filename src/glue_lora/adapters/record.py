"""A saved adapter: the files of its directory, where it is, and what it records (``glue_lora.json``).

A training run saves ``adapter/`` in the PEFT layout (``adapter_config.json``,
``adapter_model.safetensors``) plus ``glue_lora.json``, the record of what is needed to rebuild the
base model (model config, task, labels, method, LoRA config, max length, seed). A method that trains
the model's own weights (BitFit, head only) saves just those tensors (``trained_weights.safetensors``);
a full fine-tuning run saves the whole model with ``save_pretrained``; the same record is beside each.

Weights are read from safetensors only: a pickle is never unpickled here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.method import LORA, MethodSettings, method_settings
from glue_lora.settings.model import ModelSettings
from glue_lora.utils.errors import ConfigError, DataError
from glue_lora.utils.run_files import ADAPTER

RECORD = "glue_lora.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_WEIGHTS = "model.safetensors"
# The tensors a weight-subset method (BitFit, head only) trained, by their names in the model.
TRAINED_WEIGHTS = "trained_weights.safetensors"
# CorDA and LoRA-GA: the B0 and A0 of their data-driven start, whose product the base gave up
INITIAL_ADAPTER = "initial_adapter.safetensors"
# Keys of a saved PEFT adapter start with this; the rest is the module path in the transformers model.
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterInfo:
    """What ``glue_lora.json`` records about one saved adapter (or fully fine-tuned model)."""

    path: Path
    task: str
    label_names: tuple[str, ...] | None
    model: dict[str, Any]
    lora: dict[str, Any] | None
    max_length: int
    seed: int
    # How the training run evaluated (precision, eval batch size, padding): eval.py's defaults.
    evaluation: dict[str, Any] = field(default_factory=dict)
    # The method it was trained with; a record written before methods existed reads as LoRA or full.
    method: MethodSettings = LORA

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def head_modules(self) -> list[str]:
        return list(self.model.get("trained_in_full") or [])


def adapter_record(
    spec: TaskSpec,
    model: ModelSettings,
    lora: LoraSettings | None,
    data: DataSettings,
    seed: int,
    precision: str,
    method: MethodSettings | None = None,
) -> dict[str, Any]:
    """The content of ``glue_lora.json`` for a run of ``model`` with ``method`` (+ ``lora``) on ``spec``.

    ``method`` defaults to LoRA with ``lora``, or full fine-tuning when ``lora`` is None.
    """
    method = method or method_settings(None, lora)
    return {
        "task": spec.name,
        "label_names": list(spec.label_names) if spec.label_names else None,
        "model": model.config,
        # Where the base weights were read, without this machine's paths (adapter_config.json names
        # a Hub id instead).
        "base_model_source": model.shareable_source(),
        "method": method.as_dict(),
        "lora": lora.as_dict() if lora is not None else None,
        "max_length": data.max_length,
        # A randomly initialised base (model.pretrained=false) is a function of the seed.
        "seed": seed,
        "evaluation": {
            "precision": str(precision),
            "batch_size": data.eval_batch_size or data.batch_size,
            "padding": data.padding,
        },
    }


@contextmanager
def shared_base_name(model: torch.nn.Module, name: str | None) -> Iterator[None]:
    """While saving, let peft write ``name`` as ``base_model_name_or_path`` in adapter_config.json."""
    configs = getattr(model, "peft_config", None) or {}
    before = {key: config.base_model_name_or_path for key, config in configs.items()}
    try:
        if name is not None:
            for config in configs.values():
                config.base_model_name_or_path = name
        yield
    finally:
        for key, value in before.items():
            configs[key].base_model_name_or_path = value


def resolve_adapter_dir(path: str | Path) -> Path:
    """The adapter directory for ``path``: an adapter directory itself, or a run directory holding one."""
    path = Path(path).expanduser()
    for candidate in (path, path / ADAPTER):
        if (candidate / RECORD).is_file():
            return candidate
    if not path.exists():
        raise ConfigError(
            f"The adapter {path} does not exist. Give the directory of a training run (it holds "
            "adapter/) or the adapter directory itself (it holds glue_lora.json)."
        )
    raise ConfigError(
        f"{path} holds no adapter: neither {path / RECORD} nor {path / ADAPTER / RECORD} exists. Give "
        "the directory of a finished training run (outputs/<date>/<time>) or its adapter/ directory; "
        "a checkpoint of loralib (microsoft/LoRA) is converted first with `glue-lora import-loralib`."
    )


def read_adapter(path: str | Path) -> AdapterInfo:
    """Read the record of the adapter at ``path`` (a run or adapter directory)."""
    import json

    adapter_dir = resolve_adapter_dir(path)
    try:
        record = json.loads((adapter_dir / RECORD).read_text())
        info = AdapterInfo(
            path=adapter_dir,
            task=record["task"],
            label_names=tuple(record["label_names"]) if record.get("label_names") else None,
            model=dict(record["model"]),
            lora=dict(record["lora"]) if record.get("lora") else None,
            max_length=int(record["max_length"]),
            seed=int(record.get("seed", 0)),
            evaluation=dict(record.get("evaluation") or {}),
            method=method_settings(record.get("method"), record.get("lora")),
        )
    except (ValueError, KeyError, TypeError, ConfigError) as err:
        raise DataError(
            f"{adapter_dir / RECORD} is not a valid adapter record ({err!r}). It is written by train.py "
            "at the end of a run; train again, or restore the file from the run directory."
        ) from err
    spec = info.spec
    if spec.num_labels != info.num_labels:
        raise DataError(
            f"{adapter_dir / RECORD} records {info.num_labels} label(s) for task {info.task}, which has "
            f"{spec.num_labels}. The record does not belong to this adapter; restore it from the run."
        )
    return info
