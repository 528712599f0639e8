"""A PEFT method applied to the backbone: the method's peft config, or the model's own weights it
trains (BitFit's biases, a linear probe's head, everything for full fine-tuning).

Each ``peft_type`` has one builder below that maps the ``method`` and ``lora`` groups onto peft's
config class; ``method.peft_options`` are passed to it as written (e.g. ``use_dora: true``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from glue_lora.model.half_frozen import train_own_weights_in_fp32
from glue_lora.model.layers import LAYERS_PATTERN
from glue_lora.model.lora import apply_lora, check_targets, lora_peft_config, train_in_fp32
from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.method import MethodSettings
from glue_lora.utils.errors import ConfigError

# AdaLoRA's schedule needs the run's number of optimizer steps, which is known only once the trainer
# has the data: the config is built with this stand-in and AdaLoraSchedule sets the real one.
ADALORA_STEPS_UNTIL_KNOWN = 10**9


def _layers(lora: LoraSettings | None) -> dict[str, Any]:
    layers = lora.layers if lora is not None else None
    if not layers:
        return {}
    return {"layers_to_transform": [int(i) for i in layers], "layers_pattern": LAYERS_PATTERN}


def _lora(method: MethodSettings, lora: LoraSettings, targets: Sequence[str], head: Sequence[str]) -> Any:
    return lora_peft_config(lora.as_dict(), targets, head, **method.peft_options)


def _adalora(method: MethodSettings, lora: LoraSettings, targets: Sequence[str], head: Sequence[str]) -> Any:
    from peft import AdaLoraConfig, TaskType

    options = {"init_r": 12, "tinit": 0.1, "tfinal": 0.2, "deltaT": 10, **method.peft_options}
    if not lora.r < options["init_r"]:
        raise ConfigError(
            f"method=adalora prunes each module from init_r={options['init_r']} ranks down to lora.r="
            f"{lora.r} on average, so lora.r must be below init_r. Lower lora.r (e.g. lora.r=8 with "
            "init_r=12, AdaLoRA's GLUE setting) or raise method.peft_options.init_r."
        )
    return AdaLoraConfig(
        task_type=TaskType.SEQ_CLS,
        target_r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(targets),
        modules_to_save=list(head),
        total_step=ADALORA_STEPS_UNTIL_KNOWN,
        **_layers(lora),
        **options,
    )


def _vera(
    method: MethodSettings, lora: LoraSettings | None, targets: Sequence[str], head: Sequence[str]
) -> Any:
    from peft import TaskType, VeraConfig

    options = {"target_modules": list(targets), "save_projection": True, **method.peft_options}
    return VeraConfig(task_type=TaskType.SEQ_CLS, modules_to_save=list(head), **options)


def _ia3(
    method: MethodSettings, lora: LoraSettings | None, targets: Sequence[str], head: Sequence[str]
) -> Any:
    from peft import IA3Config, TaskType

    # Without target_modules, peft picks the model type's own (BERT/RoBERTa: key, value, output.dense).
    return IA3Config(task_type=TaskType.SEQ_CLS, modules_to_save=list(head), **method.peft_options)


def _fourierft(
    method: MethodSettings, lora: LoraSettings | None, targets: Sequence[str], head: Sequence[str]
) -> Any:
    from peft import FourierFTConfig, TaskType

    options = {"target_modules": list(targets), **method.peft_options}
    return FourierFTConfig(task_type=TaskType.SEQ_CLS, modules_to_save=list(head), **options)


PEFT_CONFIGS: dict[str, Callable[..., Any]] = {
    "lora": _lora,
    "adalora": _adalora,
    "vera": _vera,
    "ia3": _ia3,
    "fourierft": _fourierft,
}


def peft_config(
    method: MethodSettings, lora: LoraSettings | None, default_targets: Sequence[str], head: Sequence[str]
) -> Any:
    """peft's config for an adapter method (``method.trains == "adapter"``)."""
    build = PEFT_CONFIGS.get(method.peft_type or "")
    if build is None:
        raise ConfigError(
            f"method.peft_type={method.peft_type!r} is not supported: use one of {sorted(PEFT_CONFIGS)} "
            f"(conf/method/ has a file for each method)."
        )
    targets = list((lora.targets if lora is not None else None) or default_targets)
    try:
        return build(method, lora, targets, head)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"method={method.name}: peft refused its options ({err}). Check method.peft_options "
            f"{method.peft_options} against peft's {method.peft_type} config."
        ) from None


def check_loftq_possible(method: MethodSettings) -> None:
    """LoftQ quantizes the frozen weights with bitsandbytes on a GPU (peft's ``loftq_init``)."""
    if method.start != "loftq":
        return
    import importlib.util

    missing = [
        what
        for what, present in (
            ("a CUDA GPU", torch.cuda.is_available()),
            ("the bitsandbytes package", importlib.util.find_spec("bitsandbytes") is not None),
        )
        if not present
    ]
    if missing:
        raise ConfigError(
            f"method={method.name} starts from NF4-quantized weights, which peft computes with "
            f"bitsandbytes on a GPU, and this machine lacks {' and '.join(missing)}. Run it on a "
            "GPU machine with bitsandbytes installed (pip install bitsandbytes), or pick a method that "
            "runs here (e.g. method=pissa, the closest start that needs no quantization)."
        )


def _is_head(name: str, head: Sequence[str]) -> bool:
    return bool(set(name.split(".")) & set(head))


# What the weight-subset methods train, besides the head: a predicate on parameter names.
OWN_WEIGHTS: dict[str, Callable[[str], bool]] = {
    "biases": lambda name: name.endswith(".bias"),  # BitFit: every bias, LayerNorm's too
    "head": lambda name: False,  # a linear probe: the head alone
    "all": lambda name: True,  # full fine-tuning
}


def apply_method(
    model: nn.Module,
    method: MethodSettings,
    lora: LoraSettings | None,
    default_targets: Sequence[str],
    trained_in_full: Sequence[str],
    calibration: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """``model`` ready to train with ``method``: wrapped by peft, or with the weights it trains unfrozen.

    ``trained_in_full`` names the head modules (classifier, and DeBERTa's pooler): every method
    trains them in full. ``calibration``: the train batches a data-driven start (EVA, CorDA, LoRA-GA)
    is computed from; without them such a method gets LoRA's default start, of the same shapes, for
    values that are loaded next (a saved adapter, a checkpoint) or only counted (``dry_run``).
    """
    if method.peft_type == "lora":
        from glue_lora.model import data_driven_starts

        # A start computed from train batches (EVA, CorDA, LoRA-GA) or on a GPU (LoftQ) is computed
        # only where its inputs are; elsewhere LoRA's default start stands in, of the same shapes.
        counting_only = any(p.is_meta for p in model.parameters())  # dry_run: shapes, no values
        computed = not counting_only and (calibration is not None or not method.needs_calibration)
        options = method.peft_options if computed else data_driven_starts.stand_in(method.peft_options)
        if computed:
            check_loftq_possible(method)
        wrapped = apply_lora(
            model,
            lora.as_dict(),
            default_targets,
            trained_in_full,
            before_wrap=data_driven_starts.before_wrap(method, calibration) if computed else None,
            **options,
        )
        if computed:
            data_driven_starts.after_wrap(wrapped, method, calibration)
        if method.optimizer == "lora_fa":
            # LoRA-FA never trains A (its optimizer freezes it too): counted and saved as frozen.
            for name, p in wrapped.named_parameters():
                if ".lora_A." in name:
                    p.requires_grad_(False)
        return wrapped
    if method.trains == "adapter":
        from peft import get_peft_model

        if lora is not None and method.uses_lora_group:
            check_targets(model, list(lora.targets or default_targets), lora.layers)
        config = peft_config(method, lora, default_targets, trained_in_full)
        return train_in_fp32(get_peft_model(model, config), trained_in_full)
    trains = OWN_WEIGHTS[method.trains]
    for name, p in model.named_parameters():
        p.requires_grad_(trains(name) or _is_head(name, trained_in_full))
    return train_own_weights_in_fp32(model, trained_in_full)


def trained_weights(model: nn.Module) -> Mapping[str, torch.Tensor]:
    """The tensors a weight-subset method (BitFit, head only) trained: what its adapter saves."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
