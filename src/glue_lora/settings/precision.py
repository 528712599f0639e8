"""``trainer.precision`` and where it came from: the command line over the recipe over the preset.

A trainer preset writes its precision as ``${precision:<its own>}``, which resolves to the recipe's
``recipe_precision`` where the recipe sets one (conf/train.yaml); ``trainer.precision=...``
replaces the interpolation and wins over both. So the unresolved node says which of the three
gave the value, and the start-up line names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from glue_lora.utils.errors import ConfigError

PRESET_PRECISION = re.compile(r"^\$\{precision:\s*([^}]+?)\s*\}$")
FP32 = ("32", "32-true")
PRECISIONS = (
    "64",
    "64-true",
    "32",
    "32-true",
    "16",
    "16-mixed",
    "bf16",
    "bf16-mixed",
    "16-true",
    "bf16-true",
)
# Lightning's "true" half precisions convert every weight, trained ones included: refused.
HALF_WEIGHT_PRECISIONS = ("16-true", "bf16-true")


def check_precision(precision: Any) -> None:
    """Refuse an unknown ``trainer.precision``, and the ones that would train half-precision weights."""
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision!r} is unknown: use one of {', '.join(PRECISIONS)} "
            "(e.g. 32-true on CPU, bf16-mixed on a recent GPU)."
        )
    if str(precision) in HALF_WEIGHT_PRECISIONS:
        mixed = "bf16-mixed" if str(precision).startswith("bf16") else "16-mixed"
        half = "bfloat16" if mixed == "bf16-mixed" else "float16"
        raise ConfigError(
            f"trainer.precision={precision} casts the whole model to half precision, the trained "
            "weights (LoRA, head) too, so AdamW would update half-precision weights and lose the "
            f"small updates. Use trainer.precision={mixed} (fp32 trained weights, half-precision "
            f"compute), with model.frozen_dtype={half} to store the frozen weights in half precision."
        )


def _hydra_run() -> tuple[str | None, list[str]]:
    """The trainer preset chosen and the command line's overrides, inside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, []
    hydra = HydraConfig.get()
    return hydra.runtime.choices.get("trainer"), list(hydra.overrides.task)


@dataclass(frozen=True)
class PrecisionSettings:
    precision: str
    origin: str  # "command line" | "config" | "recipe" | "preset"
    preset_precision: str | None  # the preset's own, where its interpolation was kept
    preset: str | None  # trainer=<preset>, inside a Hydra run
    recipe: str | None
    tf32: bool = True

    @classmethod
    def from_config(cls, cfg: DictConfig) -> PrecisionSettings:
        raw: Any = OmegaConf.to_container(cfg.trainer, resolve=False).get("precision")
        preset, overrides = _hydra_run()
        match = PRESET_PRECISION.match(raw) if isinstance(raw, str) else None
        if match is None:
            on_command_line = any(o.lstrip("+").startswith("trainer.precision=") for o in overrides)
            origin = "command line" if on_command_line else "config"
        else:
            origin = "preset" if cfg.get("recipe_precision") is None else "recipe"
        return cls(
            precision=str(cfg.trainer.precision),
            origin=origin,
            preset_precision=match.group(1) if match else None,
            preset=preset,
            recipe=cfg.get("recipe"),
            tf32=bool(cfg.get("tf32", True)),
        )

    @property
    def is_fp32(self) -> bool:
        return self.precision in FP32

    def describe(self) -> str:
        preset = f"trainer={self.preset}" if self.preset else "the trainer preset"
        where = {
            "command line": "trainer.precision= on the command line",
            "config": "trainer.precision in the config (an experiment file or a +override)",
            "recipe": f"the recipe {self.recipe}'s recipe_precision, over {preset}'s {self.preset_precision}",
            "preset": f"{preset}",
        }[self.origin]
        line = f"precision {self.precision}, from {where}"
        if self.origin in ("recipe", "preset"):
            line += " (trainer.precision=... overrides it)"
        return line
