"""LoRA injection through peft: config mapping, target checks, what is trained, parameter counts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from glue_lora.model.layers import LAYERS_PATTERN, num_layers
from glue_lora.settings.lora import LoraSettings
from glue_lora.utils.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamCounts:
    total: int
    trainable: int
    lora: int
    head: int
    # dtypes of the trained and of the frozen weights, the most parameters' first
    trainable_dtypes: tuple[str, ...] = ()
    frozen_dtypes: tuple[str, ...] = ()

    @property
    def frozen(self) -> int:
        return self.total - self.trainable

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "trainable": self.trainable, "lora": self.lora, "head": self.head}

    def table(self) -> str:
        def dtypes(names: tuple[str, ...]) -> str:
            return f" ({', '.join(names)})" if names else ""

        rows = [
            ("total", self.total, ""),
            ("trainable", self.trainable, dtypes(self.trainable_dtypes)),
            ("frozen", self.frozen, dtypes(self.frozen_dtypes)),
            ("lora", self.lora, ""),
            ("head", self.head, ""),
        ]
        share = 100 * self.trainable / max(self.total, 1)
        lines = [f"{'parameters':<12}{'count':>16}"] + [f"{name:<12}{n:>16,}{d}" for name, n, d in rows]
        return "\n".join([*lines, f"{'trainable %':<12}{share:>16.4f}"])


def _dtype_names(sizes: dict[torch.dtype, int]) -> tuple[str, ...]:
    return tuple(str(d).removeprefix("torch.") for d in sorted(sizes, key=lambda d: -sizes[d]))


def validate_lora_config(lora_cfg: Mapping[str, Any] | None) -> None:
    """Reject out-of-range LoRA values before any model is built (``settings.lora.LoraSettings``)."""
    if lora_cfg is not None:
        LoraSettings.from_mapping(lora_cfg)


def _leaf_names(model: nn.Module, kind: type[nn.Module] = nn.Linear) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, kind)}


def check_targets(model: nn.Module, targets: Sequence[str], layers: Sequence[int] | None) -> None:
    """Fail with the available names when a target module or layer index does not exist.

    A target is a module's last name (``query``) or, as peft matches them, its dotted tail
    (``output.dense``: the attention and feed-forward outputs, not the pooler's ``dense``).
    """
    available = _leaf_names(model)
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    missing = [t for t in targets if t not in available and not any(n.endswith(f".{t}") for n in linear)]
    if missing:
        raise ConfigError(
            f"lora.targets {missing} not found in {type(model).__name__}. Its linear modules are "
            f"{sorted(available)}; set lora.targets to some of them (e.g. lora.targets=[query,value] "
            "for BERT/RoBERTa, [query_proj,value_proj] for DeBERTa-v2)."
        )
    if layers:
        n = num_layers(model)
        bad = [i for i in layers if not 0 <= int(i) < n]
        if bad:
            raise ConfigError(
                f"lora.layers {bad} out of range: {type(model).__name__} has layers 0..{n - 1}. "
                f"Pick layer indices in that range (e.g. lora.layers=[{max(n - 4, 0)},...,{n - 1}])."
            )


def lora_peft_config(
    lora_cfg: Mapping[str, Any], targets: Sequence[str], modules_to_save: Sequence[str], **options: Any
) -> Any:
    """Map our ``lora`` config group onto a peft ``LoraConfig``; ``options`` are the method's
    (``method.peft_options``: ``use_dora``, ``use_rslora``, ``init_lora_weights`` ...)."""
    from peft import LoraConfig, TaskType

    layers = lora_cfg.get("layers")
    options = nested_peft_configs(options)
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=int(lora_cfg["r"]),
        lora_alpha=lora_cfg["alpha"],
        lora_dropout=float(lora_cfg.get("dropout", 0.0)),
        target_modules=list(targets),
        bias=lora_cfg.get("bias", "none"),
        modules_to_save=list(modules_to_save),
        layers_to_transform=[int(i) for i in layers] if layers else None,
        layers_pattern=LAYERS_PATTERN if layers else None,
        **options,
    )


# LoraConfig's sub-configs of a start, by option name: peft's class of each.
START_SUB_CONFIGS = {
    "eva_config": "EvaConfig",
    "corda_config": "CordaConfig",
    "lora_ga_config": "LoraGAConfig",
    "loftq_config": "LoftQConfig",
}


def nested_peft_configs(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the sub-configs of a start (``eva_config: {rho: 2}`` ...) as peft's classes."""
    from peft.tuners.lora import config as peft_lora_config

    def build(key: str, value: Any) -> Any:
        if key in START_SUB_CONFIGS and isinstance(value, Mapping):
            return getattr(peft_lora_config, START_SUB_CONFIGS[key])(**value)
        return value

    return {key: build(key, value) for key, value in options.items()}


def apply_lora(
    model: nn.Module,
    lora_cfg: Mapping[str, Any] | None,
    default_targets: Sequence[str],
    trained_in_full: Sequence[str],
    before_wrap: Callable[[nn.Module, Any], None] | None = None,
    **options: Any,
) -> nn.Module:
    """Wrap ``model`` with LoRA (``lora_cfg``) or, when it is None, leave every weight trainable.

    ``trained_in_full`` names the head modules (classifier, and DeBERTa's pooler) that are trained
    in full alongside LoRA and saved in the adapter. ``options`` go to peft's ``LoraConfig``;
    ``before_wrap(model, config)`` runs on the bare model first (CorDA's and LoRA-GA's preprocessing).
    """
    if lora_cfg is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import get_peft_model

    validate_lora_config(lora_cfg)
    targets = list(lora_cfg.get("targets") or default_targets)
    check_targets(model, targets, lora_cfg.get("layers"))
    module_names = {part for name, _ in model.named_modules() for part in name.split(".")}
    missing_heads = [m for m in trained_in_full if m not in module_names]
    if missing_heads:
        raise ConfigError(
            f"model.trained_in_full {missing_heads} not found in {type(model).__name__}. Name "
            "modules of its head there (e.g. [classifier] or, for DeBERTa-v2, [classifier,pooler])."
        )
    config = lora_peft_config(lora_cfg, targets, trained_in_full, **options)
    if before_wrap is not None:
        before_wrap(model, config)
    peft_model = get_peft_model(model, config)
    return train_in_fp32(peft_model, trained_in_full)


def train_in_fp32(peft_model: nn.Module, trained_in_full: Sequence[str]) -> nn.Module:
    """The adapter and head of ``peft_model`` in fp32, also where the frozen weights are half precision."""
    # LoRA and head train in fp32 even when frozen weights are stored in a half dtype.
    for p in peft_model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if any(
        not p.requires_grad and p.dtype in (torch.bfloat16, torch.float16) for p in peft_model.parameters()
    ):
        # peft casts LoRA's input itself; the fp32 head must be handed fp32 hidden states too.
        for name, module in peft_model.named_modules():
            if name.rsplit(".", 1)[-1] in trained_in_full:
                module.register_forward_pre_hook(_cast_inputs_hook(torch.float32), with_kwargs=True)
    return peft_model


LORA_A_INITS = ("kaiming_uniform", "normal")


def check_lora_a_init(scheme: str) -> None:
    if scheme not in LORA_A_INITS:
        raise ConfigError(
            f"model.lora_a_init={scheme!r} is unknown: use kaiming_uniform (loralib's) or normal "
            "(N(0, initializer_range), the reference's DeBERTa)."
        )


def init_lora_a(model: nn.Module, scheme: str) -> None:
    """Draw LoRA's A matrices as ``model.lora_a_init`` says (B stays zero, so the output is unchanged).

    ``kaiming_uniform`` keeps peft's draw, which is loralib's (and so the reference's for RoBERTa).
    ``normal`` re-draws A from N(0, ``config.initializer_range``), as the reference's DeBERTa-v2
    ``_init_weights`` does; peft's ``init_lora_weights="gaussian"`` uses std 1/r instead.
    """
    check_lora_a_init(scheme)
    if scheme == "kaiming_uniform":
        return
    std = float(model.config.initializer_range)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name:
                p.normal_(mean=0.0, std=std)


def check_budget(counts: ParamCounts, lora_cfg: Mapping[str, Any] | None) -> str | None:
    """Fail when the trainable parameters (LoRA + head) exceed ``lora.budget``; else a line to print."""
    budget = (lora_cfg or {}).get("budget")
    if budget is None:
        return None
    if counts.trainable <= budget:
        return (
            f"trainable {counts.trainable:,} within lora.budget {budget:,} ({counts.trainable / budget:.1%})"
        )
    other = counts.trainable - counts.lora - counts.head
    parts = f"LoRA {counts.lora:,} + head {counts.head:,}" + (f" + other {other:,}" if other else "")
    raise ConfigError(
        f"{counts.trainable:,} trainable parameters ({parts}) exceed lora.budget={budget:,} by "
        f"{counts.trainable - budget:,}. Lower lora.r, put LoRA on fewer layers (lora.layers=[...]) "
        "or modules (lora.targets=[...]), or raise lora.budget."
    )


def _cast_inputs_hook(dtype: torch.dtype):
    def cast(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
            return value.to(dtype)
        return value

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    return hook


# Names of the parameters peft adds: LoRA (with DoRA's magnitude and AdaLoRA's E), VeRA, IA3, FourierFT.
ADAPTER_MARKERS = ("lora_", "vera_lambda", "ia3_l", "fourierft_spectrum")


def count_parameters(model: nn.Module, head_modules: Sequence[str] = ()) -> ParamCounts:
    """Parameter counts; peft's frozen copy of a head (``original_module``) is not counted.

    ``lora`` counts the parameters of the adapter peft added, whatever its method."""
    total = trainable = lora = head = 0
    dtypes: dict[bool, dict[torch.dtype, int]] = {True: {}, False: {}}
    for name, p in model.named_parameters():
        if ".original_module." in name:
            continue
        n = p.numel()
        dtypes[p.requires_grad][p.dtype] = dtypes[p.requires_grad].get(p.dtype, 0) + n
        parts = set(name.split("."))
        total += n
        trainable += n if p.requires_grad else 0
        lora += n if any(marker in name for marker in ADAPTER_MARKERS) else 0
        head += n if parts & set(head_modules) else 0
    return ParamCounts(
        total=total,
        trainable=trainable,
        lora=lora,
        head=head,
        trainable_dtypes=_dtype_names(dtypes[True]),
        frozen_dtypes=_dtype_names(dtypes[False]),
    )
