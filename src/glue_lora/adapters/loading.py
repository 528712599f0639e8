"""Loading a saved adapter: its weights (safetensors only, never a pickle), checked against the
rebuilt base model, and the model and tokenizer it was trained with.

Every method is rebuilt from its record (``glue_lora.json``): the base, then ``apply_method`` with the
recorded method and LoRA settings, then the saved tensors. PiSSA and OLoRA start A and B from the
frozen weight (an exact SVD, a QR) and leave the residual in the base; ``apply_method`` re-runs that
deterministic start on the rebuilt base before the trained A and B are loaded, so the model is the
one the run evaluated. CorDA and LoRA-GA compute their start from train batches, which loading
does not read: their saved B0 and A0 (``initial_adapter.safetensors``) turn the rebuilt base into
the same residual. EVA leaves the base as it is; its redistributed ranks come from
``adapter_config.json``. peft's own ``PeftModel.from_pretrained(base, adapter_dir)`` does the same
(``adapter_config.json`` keeps ``init_lora_weights``): it turns the base's weights into the residual
in place, so that base cannot serve other adapters (peft warns). A plain LoRA adapter on the
untouched base would need peft's conversion at save time (``save_pretrained(...,
path_initial_model_for_weight_conversion=<the adapter as initialised>)``, rank 2r), which train.py
does not do.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from glue_lora.adapters.record import (
    ADAPTER_WEIGHTS,
    INITIAL_ADAPTER,
    MODEL_WEIGHTS,
    PEFT_PREFIX,
    RECORD,
    TRAINED_WEIGHTS,
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

    return shape_differences(get_peft_model_state_dict(model), weights)


def shape_differences(expected: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> str:
    """Missing, unexpected and misshapen tensors of ``weights`` against ``expected``; "" if none."""
    expected = {k: tuple(v.shape) for k, v in expected.items()}
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


def check_state_dict(
    model: torch.nn.Module,
    weights: Mapping[str, torch.Tensor],
    source: Path,
    expected: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Fail when the saved adapter's tensors do not match the rebuilt model's names and shapes
    (``expected``: those tensors, when ``model`` is not a peft model)."""
    if expected is None:
        details = state_dict_differences(model, weights)
    else:
        details = shape_differences(expected, weights)
    if details:
        raise DataError(
            f"The weights in {source} do not fit the model rebuilt from its {RECORD} ({details}). The "
            "record and the weights come from different runs, or the file was edited; use the adapter "
            "directory exactly as train.py wrote it."
        )


def saved_peft_config(info: AdapterInfo) -> dict[str, Any]:
    """The ``adapter_config.json`` peft wrote beside the adapter ({} when there is none)."""
    import json

    path = info.path / "adapter_config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DataError(
            f"{path} is not valid JSON ({err}). It is written by train.py with the adapter; copy the "
            "adapter directory again from the run."
        ) from None


def rebuild_adapter(info: AdapterInfo, base: str | None = None) -> torch.nn.Module:
    """The base with the recorded peft method applied and its saved tensors loaded."""
    from peft import set_peft_model_state_dict

    from glue_lora.model.methods import apply_method
    from glue_lora.settings.lora import LoraSettings

    weights = load_weights(info.path)
    lora = LoraSettings.from_mapping(info.lora) if info.lora is not None else None
    method = info.method
    if method.peft_type == "lora":
        # EVA redistributes ranks (and scalings) across layers: built with the ones it saved.
        saved = saved_peft_config(info)
        patterns = {k: saved[k] for k in ("rank_pattern", "alpha_pattern") if saved.get(k)}
        method = dataclasses.replace(method, peft_options={**method.peft_options, **patterns})
    model = apply_method(build_base(info, base), method, lora, info.model["lora_targets"], info.head_modules)
    if method.saves_initial_adapter:
        from glue_lora.model.data_driven_starts import restore_residual

        restore_residual(model, load_weights(info.path, INITIAL_ADAPTER))
    if info.method.peft_type == "adalora":
        # The ranks AdaLoRA kept: its saved tensors are cut to them (peft resizes the modules on load).
        rank_pattern = saved_peft_config(info).get("rank_pattern")
        model.peft_config["default"].rank_pattern = rank_pattern
    check_state_dict(model, weights, info.path / ADAPTER_WEIGHTS)
    set_peft_model_state_dict(model, weights)
    return model


def rebuild_own_weights(info: AdapterInfo, base: str | None = None) -> torch.nn.Module:
    """The base with the tensors a BitFit or head-only run trained put back in place."""
    from glue_lora.model.methods import apply_method, trained_weights

    weights = load_weights(info.path, TRAINED_WEIGHTS)
    model = apply_method(
        build_base(info, base), info.method, None, info.model["lora_targets"], info.head_modules
    )
    check_state_dict(model, weights, info.path / TRAINED_WEIGHTS, expected=trained_weights(model))
    model.load_state_dict(weights, strict=False)
    return model


def load_whole_model(info: AdapterInfo) -> torch.nn.Module:
    """A fully fine-tuned (or merged) model saved whole with ``save_pretrained``."""
    from transformers import AutoModelForSequenceClassification

    if not any(info.path.glob("*.safetensors")):
        load_weights(info.path, MODEL_WEIGHTS)  # raises: the directory holds no safetensors
    check_safetensors(info.path)
    return AutoModelForSequenceClassification.from_pretrained(
        info.path, use_safetensors=True, dtype=torch.float32
    )


def load_model(
    adapter: str | Path | AdapterInfo, base: str | None = None, device: str | torch.device | None = None
) -> tuple[torch.nn.Module, Any, AdapterInfo]:
    """Rebuild the model an adapter was trained with: base + adapter (or trained weights) + head, in
    eval mode.

    Returns ``(model, tokenizer, info)``; ``model`` is a peft model for an adapter method, else the
    plain transformers model (BitFit, head only, full fine-tuning, a merged adapter).
    """
    info = adapter if isinstance(adapter, AdapterInfo) else read_adapter(adapter)
    if info.method.is_full:
        model = load_whole_model(info)
    elif info.method.trains == "adapter":
        model = rebuild_adapter(info, base)
    else:
        model = rebuild_own_weights(info, base)
    tokenizer = build_tokenizer_for(info, model.config, base)
    model.eval()
    if device is not None:
        model.to(device)
    log.info(
        "Loaded the %s %s adapter of %s from %s",
        info.task,
        info.method.name,
        info.model.get("name"),
        info.path,
    )
    return model, tokenizer, info
