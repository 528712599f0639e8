"""`glue-lora import-loralib <file.bin> --model M --task T <out_dir>`: loralib checkpoint -> PEFT adapter.

The checkpoints released with the LoRA paper (e.g. ``roberta_base_lora_mnli.bin``) are loralib state
dicts: ``roberta.encoder.layer.N.attention.self.query.lora_A`` (r x in), ``...lora_B`` (out x r),
and the head (``classifier.*``; DeBERTa also ``pooler.*``). loralib computes
``W x + (alpha / r) B A x``, as peft does, so the tensors carry over unchanged; only the names differ
(peft adds ``.weight`` and the ``base_model.model.`` prefix). alpha is not stored in the file: it
comes from the model's recipe for the task (2 r in every paper recipe) unless ``--alpha`` is given.

The result is an adapter directory as train.py writes it (``adapter_config.json``,
``adapter_model.safetensors``, ``glue_lora.json``), usable by eval.py, merge and init_adapter.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from glue_lora.adapters.loading import state_dict_differences
from glue_lora.adapters.record import ADAPTER_WEIGHTS, PEFT_PREFIX, RECORD, adapter_record
from glue_lora.data.tasks import get_task
from glue_lora.model.layers import layer_index
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import lora_settings
from glue_lora.settings.model import ModelSettings
from glue_lora.utils.artifacts import atomic_save_pretrained, atomic_write_json
from glue_lora.utils.errors import ConfigError, DataError, GlueLoraError, config_error_paragraph

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
LORALIB_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_[AB])$")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A loralib state dict, unpickled with ``weights_only=True`` (tensors and containers only)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist. Give the path of a loralib checkpoint (.bin / .pt).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unsafe or corrupt pickle: refused, never executed
        raise DataError(
            f"{path} could not be read as a plain state dict with torch.load(weights_only=True) "
            f"({type(err).__name__}: {str(err)[:200]}). Only files of tensors are accepted; a pickle "
            "holding code is refused. Re-save it as a plain state dict of tensors."
        ) from err
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} does not hold a state dict of tensors (name -> tensor).")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def convert_state_dict(
    state: Mapping[str, torch.Tensor], head_modules: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """loralib names -> saved-PEFT names; returns the tensors and the LoRA found (r, targets, layers)."""
    converted: dict[str, torch.Tensor] = {}
    ranks, targets, layers, unknown = set(), set(), set(), []
    for key, tensor in state.items():
        match = LORALIB_KEY.match(key)
        if match:
            module = match["module"]
            converted[f"{PEFT_PREFIX}{module}.{match['part']}.weight"] = tensor.float().contiguous()
            ranks.add(tensor.shape[0] if match["part"] == "lora_A" else tensor.shape[1])
            targets.add(module.rsplit(".", 1)[-1])
            if (layer := layer_index(key)) is not None:
                layers.add(layer)
        elif set(key.split(".")) & set(head_modules):
            converted[PEFT_PREFIX + key] = tensor.float().contiguous()
        else:
            unknown.append(key)
    if unknown:
        raise DataError(
            f"The checkpoint holds tensors that are neither LoRA (…lora_A / …lora_B) nor the head "
            f"{head_modules}: {sorted(unknown)[:5]}{' ...' if len(unknown) > 5 else ''}. Give a loralib "
            "checkpoint of LoRA weights and head only (as microsoft/LoRA releases them)."
        )
    if not ranks:
        raise DataError("The checkpoint holds no LoRA tensors (names ending in .lora_A / .lora_B).")
    if len(ranks) > 1:
        raise DataError(f"The checkpoint mixes LoRA ranks {sorted(ranks)}; one rank is supported.")
    return converted, {"r": ranks.pop(), "targets": sorted(targets), "layers": sorted(layers)}


def compose_run_config(model: str, task: str, overrides: list[str] = ()) -> DictConfig:
    """The train.py config of ``model=<model> task=<task>`` (its recipe included)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, OverrideParseException

    if not CONF_DIR.is_dir():
        raise ConfigError(f"The config directory {CONF_DIR} is missing; run from a glue-lora checkout.")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose(config_name="train", overrides=[f"model={model}", f"task={task}", *overrides])
        except (ConfigCompositionException, OverrideParseException) as err:
            raise ConfigError(
                f"Could not compose model={model} task={task}: {config_error_paragraph(err)}"
            ) from err


def import_loralib(
    checkpoint: str | Path, model: str, task: str, out_dir: str | Path, alpha: float | None = None
) -> Path:
    """Convert ``checkpoint`` for ``model`` and ``task`` into the adapter directory ``out_dir``."""
    from safetensors.torch import save_file

    from glue_lora.model.backbone import build_backbone
    from glue_lora.model.lora import apply_lora

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} already exists and is not empty; give a new directory.")
    cfg = compose_run_config(model, task)
    spec = get_task(task)
    heads = list(cfg.model.trained_in_full)
    converted, found = convert_state_dict(read_checkpoint(checkpoint), heads)
    r = found["r"]
    if alpha is None:
        alpha = cfg.lora.alpha if r == cfg.lora.r else 2 * r
        if r != cfg.lora.r:
            log.warning(
                "The checkpoint has rank %d, not the recipe's %d: alpha = 2r = %d.", r, cfg.lora.r, alpha
            )
    n_layers = (cfg.model.get("architecture") or {}).get("num_hidden_layers")
    with open_dict(cfg):
        cfg.lora.r = r
        cfg.lora.alpha = int(alpha) if float(alpha).is_integer() else float(alpha)
        cfg.lora.targets = found["targets"]
        cfg.lora.layers = None if found["layers"] == list(range(n_layers or 0)) else found["layers"]

    # The model's skeleton on the meta device: names and shapes to check against, no weights.
    skeleton_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    skeleton_cfg["pretrained"] = False
    with torch.device("meta"):
        backbone = build_backbone(skeleton_cfg, spec.num_labels, spec.is_regression, device="meta")
        skeleton = apply_lora(backbone, OmegaConf.to_container(cfg.lora), cfg.model.lora_targets, heads)
    differences = state_dict_differences(skeleton, converted)
    if differences:
        raise DataError(
            f"{checkpoint} does not fit model={model} task={task} ({differences}). Check --model (the "
            f"checkpoint's base model) and --task (its label count: {task} has {spec.num_labels})."
        )

    model_settings = ModelSettings.from_config(cfg.model)
    lora = lora_settings(cfg.lora, model_settings.lora_targets)
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    record = adapter_record(spec, model_settings, lora, data, cfg.seed, cfg.trainer.precision)
    record = {**record, "imported_from": str(checkpoint)}

    def write(path: str | Path) -> None:  # the PEFT layout, as peft's save_pretrained writes it
        save_file(converted, str(Path(path) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        skeleton.peft_config["default"].save_pretrained(str(path))
        atomic_write_json(Path(path) / RECORD, record)

    # Written into a temporary directory and renamed: a crash leaves no half adapter.
    atomic_save_pretrained(SimpleNamespace(save_pretrained=write), out_dir)
    log.info(
        "Imported %s: %d tensors, r=%d alpha=%s targets=%s -> %s",
        checkpoint,
        len(converted),
        cfg.lora.r,
        cfg.lora.alpha,
        list(cfg.lora.targets),
        out_dir,
    )
    return out_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glue-lora import-loralib",
        description="Convert a microsoft/LoRA (loralib) checkpoint into a PEFT adapter for eval.py.",
    )
    parser.add_argument("checkpoint", help="the loralib state dict, e.g. roberta_base_lora_mnli.bin")
    parser.add_argument("out_dir", help="a new adapter directory")
    parser.add_argument("--model", required=True, help="model config name (conf/model/), e.g. roberta_base")
    parser.add_argument("--task", required=True, help="the task it was trained on, e.g. mnli")
    parser.add_argument("--alpha", type=float, help="LoRA alpha (default: the recipe's, 2r in the paper)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out_dir = import_loralib(args.checkpoint, args.model, args.task, args.out_dir, alpha=args.alpha)
    except GlueLoraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"adapter in {out_dir}; evaluate it with: python eval.py adapter={out_dir}")
    return 0
