"""The ``lora`` config group as typed settings (with their range checks), and its short label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from glue_lora.utils.errors import ConfigError


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA setting: rank, scaling, dropout, where it is injected, and the parameter budget.

    The one place its values are range-checked (``__post_init__``): the config's validation, peft's
    mapping and the adapter importer all build one.
    """

    r: int
    alpha: float
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None  # None: the model's lora_targets
    layers: tuple[int, ...] | None = None  # None: every layer
    bias: str = "none"
    budget: int | None = None  # max trainable parameters (LoRA + head)

    def __post_init__(self) -> None:
        r, alpha, dropout = self.r, self.alpha, self.dropout
        if not _positive_int(r):
            raise ConfigError(
                f"lora.r={r!r} is invalid: the LoRA rank must be a positive integer (e.g. lora.r=8). "
                "For full fine-tuning without LoRA use lora=none."
            )
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or alpha <= 0:
            raise ConfigError(
                f"lora.alpha={alpha!r} is invalid: the LoRA scaling alpha must be a positive number "
                "(the paper uses alpha = 2r, e.g. lora.alpha=16 for r=8)."
            )
        if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"lora.dropout={dropout!r} is invalid: it must be in [0, 1) (e.g. lora.dropout=0.05)."
            )
        if self.bias not in ("none", "all", "lora_only"):
            raise ConfigError(f"lora.bias={self.bias!r} is invalid: use none, all or lora_only.")
        if self.budget is not None and not _positive_int(self.budget):
            raise ConfigError(
                f"lora.budget={self.budget!r} is invalid: it must be a positive number of trainable "
                "parameters (e.g. lora.budget=1000000), or null for no limit."
            )

    @classmethod
    def from_mapping(cls, lora: Mapping[str, Any]) -> LoraSettings:
        """From a plain ``lora`` dict (the config group, or an adapter's record)."""
        targets, layers = lora.get("targets"), lora.get("layers")
        return cls(
            r=lora.get("r"),
            alpha=lora.get("alpha"),
            dropout=lora.get("dropout", 0.0),
            targets=tuple(targets) if targets else None,
            layers=tuple(layers) if layers is not None else None,
            bias=lora.get("bias", "none"),
            budget=lora.get("budget"),
        )

    def with_targets(self, default_targets: Sequence[str]) -> LoraSettings:
        """The same setting with its targets spelled out (the model's ``lora_targets`` when unset)."""
        from dataclasses import replace

        return replace(self, targets=tuple(self.targets or default_targets))

    def as_dict(self) -> dict[str, Any]:
        """As results.json, glue_lora.json and peft's mapping read it (lists, not tuples)."""
        return {
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets) if self.targets is not None else None,
            "layers": list(self.layers) if self.layers is not None else None,
            "bias": self.bias,
            "budget": self.budget,
        }

    @property
    def label(self) -> str:
        return lora_label(self.as_dict())


def lora_settings(lora_node: Any, model_targets: Sequence[str]) -> LoraSettings | None:
    """The ``lora`` group as settings with its targets spelled out; None for ``lora=none``."""
    if lora_node is None:
        return None
    plain = (
        OmegaConf.to_container(lora_node, resolve=True) if isinstance(lora_node, DictConfig) else lora_node
    )
    return LoraSettings.from_mapping(plain).with_targets(model_targets)


def lora_dict(cfg: DictConfig) -> dict[str, Any] | None:
    """The ``lora`` group as a plain dict, or None for full fine-tuning (``lora=none``)."""
    if cfg.get("lora") is None:
        return None
    lora = OmegaConf.to_container(cfg.lora, resolve=True)
    lora["targets"] = list(lora.get("targets") or cfg.model.lora_targets)
    return lora


def lora_label(lora: Mapping[str, Any] | None) -> str:
    """Short name of a LoRA setting: ``r8-a16`` (rank 8, alpha 16), or ``full`` for full fine-tuning."""
    if lora is None:
        return "full"
    alpha = lora.get("alpha")
    alpha = int(alpha) if isinstance(alpha, float) and alpha.is_integer() else alpha
    return f"r{lora.get('r')}-a{alpha}"


def label_order(label: str) -> tuple[int, float, float, str]:
    """Sort key of ``lora_label``s: ``full`` first, then by rank, then by alpha."""
    if label == "full":
        return (0, 0.0, 0.0, label)
    rank, _, alpha = label.partition("-a")
    try:
        return (1, float(rank.removeprefix("r")), float(alpha), label)
    except ValueError:
        return (2, 0.0, 0.0, label)
