"""Starting a run from another task's adapter (the paper starts MRPC, RTE and STS-B from MNLI).

LoRA weights are loaded as they are and must fit the run's LoRA (same rank, targets and layers); an
adapter of another method (DoRA, PiSSA, VeRA, BitFit ...) is refused.
Each head module (``model.trained_in_full``: the classifier, and DeBERTa's pooler) is loaded when
its shapes fit; a head built for another label count is dropped whole and keeps the fresh
initialisation of this run. DeBERTa's pooler does not depend on the labels, so it is kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from glue_lora.adapters.loading import head_module_of, load_weights
from glue_lora.adapters.record import PEFT_PREFIX, AdapterInfo, read_adapter
from glue_lora.data.tasks import TaskSpec
from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.method import LORA, MethodSettings
from glue_lora.utils.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitAdapter:
    """A checked adapter to start from, with its weights read."""

    info: AdapterInfo
    weights: dict[str, torch.Tensor]


def is_plain_lora(method: MethodSettings) -> bool:
    """LoRA's weights as peft's default LoRA computes them (LoRA+ and LoRA-FA differ only in training)."""
    return method.peft_type == "lora" and not method.peft_options


def _how_to_get_one(model: str, path: str) -> str:
    return (
        f"Train one first with `python train.py model={model} task=mnli hydra.run.dir={path}`, or "
        f"convert the released microsoft/LoRA checkpoint with `glue-lora import-loralib "
        f"<{model}_lora_mnli.bin> --model {model} --task mnli {path}`; or start from the pretrained "
        "model alone with init_adapter=null."
    )


def check_init_adapter(init_adapter: str | None, method: MethodSettings) -> None:
    """``init_adapter`` loads an MNLI-trained LoRA adapter's A and B (and head): a start for plain LoRA
    only. Other methods have other weights (DoRA's magnitudes, AdaLoRA's triplets, VeRA's vectors),
    or train A and B differently (LoRA+, LoRA-FA), so starting them from it would not be the method."""
    if not init_adapter or method == LORA:
        return
    raise ConfigError(
        f"init_adapter={init_adapter} starts a run from an MNLI-trained LoRA adapter, which only plain "
        f"LoRA (method=lora) can start from, but this run uses method={method.name}. Set "
        "init_adapter=null (the MRPC, RTE and STS-B recipes set it), or train with method=lora."
    )


def prepare_init_adapter(
    path: str | None, *, model: str, task: str, lora: LoraSettings | None, recipe: str | None = None
) -> InitAdapter | None:
    """Read ``init_adapter`` (``path``) for a run of ``model`` on ``task`` with ``lora`` before any
    model is built, or fail saying how to get one."""
    if not path:
        return None
    path = str(path)
    if lora is None:
        raise ConfigError(
            f"init_adapter={path} loads LoRA weights, but lora=none trains the whole model without "
            "LoRA. Set init_adapter=null for full fine-tuning, or train with LoRA (e.g. lora=r8)."
        )
    try:
        info = read_adapter(path)
    except ConfigError as err:
        starts = f"The {recipe} recipe starts" if recipe else "This run starts"
        raise ConfigError(
            f"init_adapter={path}: no adapter there ({err}). {starts} {task} from an adapter "
            f"of model={model} trained on MNLI, as the LoRA paper does. {_how_to_get_one(model, path)}"
        ) from None
    if info.model.get("name") != model:
        raise ConfigError(
            f"init_adapter={path} was trained on model={info.model.get('name')}, but this run uses "
            f"model={model}: LoRA weights only fit the model they were trained on. "
            f"{_how_to_get_one(model, path)}"
        )
    if info.method.is_full:
        raise ConfigError(
            f"init_adapter={path} is a fully fine-tuned model, not a LoRA adapter. Give an adapter "
            "trained with LoRA, or init_adapter=null."
        )
    if not is_plain_lora(info.method):
        raise ConfigError(
            f"init_adapter={path} was trained with method={info.method.name}, not plain LoRA: only "
            "plain LoRA weights (method=lora, or loraplus / lora_fa, which train the same weights) "
            "are loaded as a start. Give an adapter trained with method=lora, or init_adapter=null."
        )
    if float(info.lora["alpha"]) / info.lora["r"] != float(lora.alpha) / lora.r:
        log.warning(
            "init_adapter %s was trained with lora.alpha=%s, r=%s; this run uses alpha=%s, r=%s, so its "
            "LoRA update is scaled differently.",
            path,
            info.lora["alpha"],
            info.lora["r"],
            lora.alpha,
            lora.r,
        )
    return InitAdapter(info=info, weights=load_weights(info.path))


def summarize_keys(keys: Iterable[str]) -> str:
    """Tensor names with layer indices folded: ``roberta.encoder.layer.{0-11}.attention...``."""
    groups: dict[str, list[int]] = {}
    for key in keys:
        key = key.removeprefix(PEFT_PREFIX)
        match = re.search(r"\.(\d+)\.", key)
        pattern = key if match is None else key[: match.start()] + ".{}." + key[match.end() :]
        groups.setdefault(pattern, []).extend([] if match is None else [int(match.group(1))])
    parts = []
    for pattern, ids in sorted(groups.items()):
        if not ids:
            parts.append(pattern)
            continue
        ids = sorted(set(ids))
        contiguous = ids == list(range(ids[0], ids[-1] + 1))
        span = f"{ids[0]}-{ids[-1]}" if contiguous and len(ids) > 1 else ",".join(map(str, ids))
        parts.append(pattern.replace("{}", "{" + span + "}"))
    return ", ".join(parts) if parts else "nothing"


def load_init_adapter(
    model: torch.nn.Module, init: InitAdapter | None, spec: TaskSpec, head_modules: Sequence[str]
) -> dict[str, Any] | None:
    """Load ``init`` into the peft ``model``; returns (and logs) what was loaded and what was dropped."""
    if init is None:
        return None
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    fresh = get_peft_model_state_dict(model)
    current = {k: tuple(v.shape) for k, v in fresh.items()}
    saved: Mapping[str, torch.Tensor] = init.weights
    misfit_heads = {
        head_module_of(k, head_modules)
        for k, v in saved.items()
        if k in current and current[k] != tuple(v.shape) and head_module_of(k, head_modules)
    }
    body_problems = [
        f"{k.removeprefix(PEFT_PREFIX)} {tuple(saved[k].shape) if k in saved else 'absent'} in the "
        f"adapter, {current.get(k, 'absent')} here"
        for k in sorted(set(current) | set(saved))
        if head_module_of(k, head_modules) is None
        and (k not in saved or k not in current or current[k] != tuple(saved[k].shape))
    ]
    if body_problems:
        raise ConfigError(
            f"The LoRA weights of init_adapter={init.info.path} do not fit this run's LoRA: "
            f"{'; '.join(body_problems[:3])}{' ...' if len(body_problems) > 3 else ''}. Use the LoRA "
            f"config it was trained with (lora.r={init.info.lora['r']}, lora.targets="
            f"{init.info.lora.get('targets')}, lora.layers={init.info.lora.get('layers')}), or "
            "init_adapter=null."
        )
    loaded = {k: v for k, v in saved.items() if head_module_of(k, head_modules) not in misfit_heads}
    dropped = sorted(k for k in saved if k not in loaded)
    # peft sets every tensor of the adapter: a dropped head is set to its own fresh values.
    set_peft_model_state_dict(model, {**fresh, **loaded})

    lora_keys = [k for k in loaded if head_module_of(k, head_modules) is None]
    head_keys = [k for k in loaded if head_module_of(k, head_modules) is not None]
    log.info(
        "init_adapter %s (task %s, %d label(s)) -> task %s (%d label(s))",
        init.info.path,
        init.info.task,
        init.info.num_labels,
        spec.name,
        spec.num_labels,
    )
    log.info("init_adapter loaded %d LoRA tensors: %s", len(lora_keys), summarize_keys(lora_keys))
    log.info("init_adapter loaded head tensors: %s", summarize_keys(head_keys))
    if dropped:
        log.info(
            "init_adapter dropped head %s (%s): sized for %d label(s), re-initialised for %d",
            ", ".join(sorted(misfit_heads)),
            summarize_keys(dropped),
            init.info.num_labels,
            spec.num_labels,
        )
    return {
        "path": str(init.info.path),
        "loaded": sorted(k.removeprefix(PEFT_PREFIX) for k in loaded),
        "dropped": [k.removeprefix(PEFT_PREFIX) for k in dropped],
    }
