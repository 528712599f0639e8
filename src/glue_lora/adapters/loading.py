"""Loading a saved adapter: its weights (safetensors only, never a pickle), checked against the
rebuilt base model, and the model and tokenizer it was trained with."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from glue_lora.adapters.record import (
    ADAPTER_WEIGHTS,
    MODEL_WEIGHTS,
    PEFT_PREFIX,
    RECORD,
    AdapterInfo,
    read_adapter,
)
from glue_lora.utils.errors import DataError

log = logging.getLogger(__name__)


def head_module_of(key: str, head_modules: Sequence[str]) -> str | None:
    """The path of the head module (e.g. ``classifier``) a saved tensor belongs to; None for LoRA."""
    parts = key.removeprefix(PEFT_PREFIX).split(".")
    for i, part in enumerate(parts):
        if part in head_modules:
            return ".".join(parts[: i + 1])
    return None


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
