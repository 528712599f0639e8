"""A saved adapter: where it is, what it records, its weights, and the model it rebuilds.

A training run saves ``adapter/`` in the PEFT layout (``adapter_config.json``,
``adapter_model.safetensors``) plus ``glue_lora.json``, the record of what is needed to rebuild the
base model (model config, task, labels, LoRA config, max length, seed). A full fine-tuning run saves
the whole model with ``save_pretrained`` instead, with the same record beside it.

Weights are read from safetensors only: a pickle is never unpickled here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError

from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.settings.validation import lora_dict
from glue_lora.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

RECORD = "glue_lora.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_WEIGHTS = "model.safetensors"
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

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def head_modules(self) -> list[str]:
        return list(self.model.get("trained_in_full") or [])


def adapter_record(cfg: DictConfig, spec: TaskSpec) -> dict[str, Any]:
    """The content of ``glue_lora.json`` for a run of ``cfg`` on ``spec``."""
    from glue_lora.model.backbone import resolve_source

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    pretrained = model_cfg.get("pretrained", True)
    return {
        "task": spec.name,
        "label_names": list(spec.label_names) if spec.label_names else None,
        "model": model_cfg,
        # Where this machine read the base weights (adapter_config.json names a Hub id instead).
        "base_model_source": resolve_source(model_cfg) if pretrained else f"random:{model_cfg['name']}",
        "lora": lora_dict(cfg),
        "max_length": cfg.data.max_length,
        # A randomly initialised base (model.pretrained=false) is a function of the seed.
        "seed": cfg.seed,
        "evaluation": {
            "precision": str(cfg.trainer.precision),
            "batch_size": cfg.data.eval_batch_size or cfg.data.batch_size,
            "padding": cfg.data.get("padding", "longest"),
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


def head_module_of(key: str, head_modules: Sequence[str]) -> str | None:
    """The path of the head module (e.g. ``classifier``) a saved tensor belongs to; None for LoRA."""
    parts = key.removeprefix(PEFT_PREFIX).split(".")
    for i, part in enumerate(parts):
        if part in head_modules:
            return ".".join(parts[: i + 1])
    return None


def resolve_adapter_dir(path: str | Path) -> Path:
    """The adapter directory for ``path``: an adapter directory itself, or a run directory holding one."""
    path = Path(path).expanduser()
    for candidate in (path, path / "adapter"):
        if (candidate / RECORD).is_file():
            return candidate
    if not path.exists():
        raise ConfigError(
            f"The adapter {path} does not exist. Give the directory of a training run (it holds "
            "adapter/) or the adapter directory itself (it holds glue_lora.json)."
        )
    raise ConfigError(
        f"{path} holds no adapter: neither {path / RECORD} nor {path / 'adapter' / RECORD} exists. Give "
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
        )
    except (ValueError, KeyError, TypeError) as err:
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


def load_weights(adapter_dir: str | Path, filename: str = ADAPTER_WEIGHTS) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_dir/filename``, read with safetensors (never unpickled)."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    path = adapter_dir / filename
    if not path.is_file():
        pickles = sorted(p.name for p in adapter_dir.glob("*.bin"))
        found = f" It holds {pickles}: pickle files are not loaded." if pickles else ""
        raise DataError(
            f"{path} is missing.{found} Adapters are read from safetensors only; save the adapter "
            "again with train.py (or peft's save_pretrained with safe_serialization=True), or convert "
            "a loralib checkpoint with `glue-lora import-loralib`."
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise damaged_file_error(path, err) from None


def damaged_file_error(path: Path, err: BaseException) -> DataError:
    """The error for a weights file that exists but cannot be read (truncated, overwritten)."""
    size = path.stat().st_size if path.is_file() else 0
    return DataError(
        f"{path} is damaged and cannot be read ({size:,} bytes; {str(err).strip() or type(err).__name__}). "
        "It was probably truncated by a full disk or an interrupted copy, or overwritten. Copy the "
        f"{path.parent.name}/ directory again from the machine that trained it, or re-train (or "
        "re-merge) to write it anew."
    )


def check_safetensors(directory: Path) -> None:
    """Read the header of every safetensors file in ``directory``; a damaged one raises ``DataError``."""
    from safetensors import safe_open

    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as err:
            raise damaged_file_error(path, err) from None


def base_model_config(info: AdapterInfo, base: str | None = None) -> dict[str, Any]:
    """The ``model`` config the base is rebuilt from; ``base`` (a directory or Hub id) replaces its source."""
    model_cfg = dict(info.model)
    if base is not None:
        model_cfg.update(name_or_path=str(base), pretrained=True)
    return model_cfg


def build_base(info: AdapterInfo, base: str | None = None, num_labels: int | None = None) -> torch.nn.Module:
    """The frozen base model of ``info`` with a fresh head of ``num_labels`` (default: the adapter's).

    A randomly initialised base (``model.pretrained=false``, tests and benchmarks) is rebuilt from
    the seed of the run, so that it equals the base the adapter was trained on.
    """
    import lightning as L

    from glue_lora.model.backbone import build_backbone

    model_cfg = base_model_config(info, base)
    if not model_cfg.get("pretrained", True):
        L.seed_everything(info.seed, verbose=False)
    n = info.num_labels if num_labels is None else num_labels
    return build_backbone(model_cfg, n, regression=n == 1 and info.label_names is None)


def build_tokenizer_for(info: AdapterInfo, config: Any, base: str | None = None) -> Any:
    """The tokenizer saved beside the weights (merged models), else the base model's."""
    from glue_lora.model.backbone import build_tokenizer

    if base is None and (info.path / "tokenizer_config.json").is_file():
        return build_tokenizer({"tokenizer": str(info.path)}, config)
    return build_tokenizer(base_model_config(info, base), config)


def state_dict_differences(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``weights`` (saved adapter keys) from loading into the peft ``model``; "" if nothing."""
    from peft import get_peft_model_state_dict

    expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    short = lambda k: k.removeprefix(PEFT_PREFIX)  # noqa: E731
    problems = {
        "missing": [short(k) for k in sorted(set(expected) - set(found))],
        "unexpected": [short(k) for k in sorted(set(found) - set(expected))],
        "other shape": [
            f"{short(k)} {found[k]} instead of {expected[k]}"
            for k in sorted(set(expected) & set(found))
            if expected[k] != found[k]
        ],
    }
    return "; ".join(
        f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for label, keys in problems.items()
        if keys
    )


def check_state_dict(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: Path) -> None:
    """Fail when the saved adapter's tensors do not match the rebuilt model's names and shapes."""
    details = state_dict_differences(model, weights)
    if details:
        raise DataError(
            f"The weights in {source} do not fit the model rebuilt from its {RECORD} ({details}). The "
            "record and the weights come from different runs, or the file was edited; use the adapter "
            "directory exactly as train.py wrote it."
        )


def load_model(
    adapter: str | Path | AdapterInfo, base: str | None = None, device: str | torch.device | None = None
) -> tuple[torch.nn.Module, Any, AdapterInfo]:
    """Rebuild the model an adapter was trained with: base + LoRA + head, in eval mode.

    Returns ``(model, tokenizer, info)``; ``model`` is a peft model, or the plain transformers model
    of a full fine-tuning run or a merged adapter.
    """
    from peft import set_peft_model_state_dict

    from glue_lora.model.lora import apply_lora

    info = adapter if isinstance(adapter, AdapterInfo) else read_adapter(adapter)
    if info.lora is None:
        from transformers import AutoModelForSequenceClassification

        if not any(info.path.glob("*.safetensors")):
            load_weights(info.path, MODEL_WEIGHTS)  # raises: the directory holds no safetensors
        check_safetensors(info.path)
        model = AutoModelForSequenceClassification.from_pretrained(
            info.path, use_safetensors=True, dtype=torch.float32
        )
    else:
        weights = load_weights(info.path)
        model = apply_lora(build_base(info, base), info.lora, info.model["lora_targets"], info.head_modules)
        check_state_dict(model, weights, info.path / ADAPTER_WEIGHTS)
        set_peft_model_state_dict(model, weights)
    tokenizer = build_tokenizer_for(info, model.config, base)
    model.eval()
    if device is not None:
        model.to(device)
    log.info("Loaded the %s adapter of %s from %s", info.task, info.model.get("name"), info.path)
    return model, tokenizer, info
