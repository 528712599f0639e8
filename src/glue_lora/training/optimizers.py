"""The optimizer of a run: the ``optimizer`` group over our param groups, or the one a method brings.

Most methods train with the ``optimizer=`` group as it is (``method.optimizer: default``). Two change
the optimizer itself, and are built here with peft's own functions:

- ``loraplus`` (LoRA+): peft's ``create_loraplus_optimizer`` around the ``optimizer=`` group's class
  and settings; B (and every other one-dimensional weight) learns ``loraplus_lr_ratio`` times faster.
- ``lora_fa`` (LoRA-FA): peft's ``create_lorafa_optimizer``; A is frozen and B's gradient projected.

Both build their own param groups, so layer-wise learning rates (``lr_tiers``) cannot apply to them.
The LR schedule still does: it scales each group's own learning rate (``LambdaLR``), so B keeps
``lr x ratio`` through warm-up and decay.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.method import MethodSettings
from glue_lora.training.param_groups import param_groups
from glue_lora.utils.errors import ConfigError

LORAPLUS_OPTIONS = ("loraplus_lr_ratio", "loraplus_lr_embedding")


def check_method_optimizer(method: MethodSettings, lr_tiers: Mapping[str, Any] | None) -> None:
    """Refuse settings that the method's own optimizer cannot honour, before anything is built."""
    if method.optimizer == "default":
        return
    if lr_tiers:
        raise ConfigError(
            f"method={method.name} builds its own param groups (peft's {method.optimizer} optimizer "
            "sets the learning rate of A and B), so layer-wise learning rates cannot apply: lr_tiers "
            f"is set. Use lr_tiers=none with method={method.name}, or a method with the default "
            "optimizer (e.g. method=lora) to keep the tiers."
        )
    if method.peft_type != "lora":
        raise ConfigError(
            f"method={method.name} sets method.optimizer={method.optimizer}, which works on LoRA's A "
            f"and B matrices, but its peft_type is {method.peft_type}. Use method.optimizer=default, "
            "or peft_type: lora."
        )
    if method.optimizer == "loraplus":
        unknown = sorted(set(method.optimizer_options) - set(LORAPLUS_OPTIONS))
        if unknown or "loraplus_lr_ratio" not in method.optimizer_options:
            raise ConfigError(
                f"method={method.name}: method.optimizer_options={dict(method.optimizer_options)} is "
                f"invalid: LoRA+ takes loraplus_lr_ratio (required, e.g. 16) and optionally "
                f"loraplus_lr_embedding{f'; unknown key(s) {unknown}' if unknown else ''}."
            )
        ratio = method.optimizer_options["loraplus_lr_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio <= 0:
            raise ConfigError(
                f"method.optimizer_options.loraplus_lr_ratio={ratio!r} is invalid: it is the ratio of "
                "B's learning rate to A's, a positive number (the paper: 16 or more)."
            )
    if method.optimizer == "lora_fa":
        if method.optimizer_options:
            raise ConfigError(
                f"method={method.name}: method.optimizer_options={dict(method.optimizer_options)} is "
                "invalid: LoRA-FA takes its settings from the optimizer and lora groups (optimizer.lr, "
                "optimizer.weight_decay, lora.r, lora.alpha). Set method.optimizer_options={}."
            )
        if method.peft_options.get("use_dora"):
            raise ConfigError(
                f"method={method.name} with use_dora: LoRA-FA pairs each A with its B and has no rule "
                "for DoRA's magnitude vector. Drop method.peft_options.use_dora."
            )


def _class_and_settings(factory: Callable[..., torch.optim.Optimizer]) -> tuple[type, dict[str, Any]]:
    """The optimizer class and keyword settings of the ``optimizer=`` group (a ``functools.partial``)."""
    if not isinstance(factory, functools.partial) or not isinstance(factory.func, type):
        raise ConfigError(
            f"optimizer= must be a partial optimizer class (_target_ with _partial_: true, as in "
            f"conf/optimizer/adamw.yaml) for LoRA+ to build around, not {factory!r}."
        )
    settings = dict(factory.keywords)
    if settings.get("betas") is not None:
        settings["betas"] = tuple(float(b) for b in settings["betas"])
    return factory.func, settings


def loraplus_optimizer(
    model: nn.Module, factory: Callable[..., torch.optim.Optimizer], options: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """LoRA+ (peft ``create_loraplus_optimizer``) with the ``optimizer=`` group's class and settings.

    peft's groups: A and the other matrices (the head's weights) at ``lr``; B and every other
    one-dimensional weight at ``lr x loraplus_lr_ratio``, those among them that are biases or
    LayerNorm weights without weight decay. Weight decay is ``optimizer.weight_decay`` for the others
    (passed as peft's ``loraplus_weight_decay``, which otherwise defaults to 0), so biases and norms
    stay undecayed as in our own groups. What differs from them: the head's biases (and any
    trained LayerNorm) learn at ``lr x ratio`` too, since peft places every 1-D weight with B.
    """
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls, settings = _class_and_settings(factory)
    lr = settings.pop("lr")
    weight_decay = settings.pop("weight_decay", 0.0) or 0.0
    return create_loraplus_optimizer(
        model,
        optimizer_cls,
        lr=lr,
        loraplus_weight_decay=weight_decay,
        weight_decay=weight_decay,
        **dict(options),
        **settings,
    )


def lorafa_optimizer(
    model: nn.Module, factory: Callable[..., torch.optim.Optimizer], lora: LoraSettings
) -> torch.optim.Optimizer:
    """LoRA-FA (peft ``create_lorafa_optimizer``): A frozen, B's gradient projected, AdamW otherwise.

    peft's optimizer is its own AdamW (``LoraFAOptimizer``), so the ``optimizer=`` group gives only
    its settings: lr, weight_decay, and betas and eps, set on peft's one param group (peft would
    otherwise use (0.9, 0.999) and 1e-6). What differs from our groups: that one group decays every
    trained weight, biases included. rsLoRA comes from the model's own LoRA config (peft's
    ``use_rslora`` argument is deprecated), and each module's scaling from the module.
    """
    from peft.optimizers import create_lorafa_optimizer

    settings = dict(factory.keywords) if isinstance(factory, functools.partial) else {}
    if "lr" not in settings:
        raise ConfigError(
            f"method=lora_fa needs the optimizer group's lr (optimizer.lr); {factory!r} has none."
        )
    optimizer = create_lorafa_optimizer(
        model,
        r=lora.r,
        lora_alpha=lora.alpha,
        lr=float(settings["lr"]),
        weight_decay=float(settings.get("weight_decay") or 0.0),
    )
    for group in optimizer.param_groups:
        if settings.get("betas") is not None:
            group["betas"] = tuple(float(b) for b in settings["betas"])
        if settings.get("eps") is not None:
            group["eps"] = float(settings["eps"])
    return optimizer


def build_optimizer(
    model: nn.Module,
    factory: Callable[..., torch.optim.Optimizer],
    method: MethodSettings,
    lora: LoraSettings | None,
    lr_tiers: Mapping[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """The run's optimizer: ``factory`` over our param groups, or the method's own (LoRA+, LoRA-FA)."""
    check_method_optimizer(method, lr_tiers)
    if method.optimizer == "loraplus":
        return loraplus_optimizer(model, factory, method.optimizer_options)
    if method.optimizer == "lora_fa":
        if lora is None:
            raise ConfigError("method=lora_fa takes r and alpha from the lora group: drop lora=none.")
        return lorafa_optimizer(model, factory, lora)
    return factory(param_groups(model, lr_tiers))
