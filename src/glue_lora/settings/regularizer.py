"""The ``regularizer`` config group (R-Drop, Cutoff) as typed settings, range-checked in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from glue_lora.utils.errors import ConfigError

CUTOFF_KINDS = ("token", "span")


@dataclass(frozen=True)
class RegularizerSettings:
    """``regularizer.rdrop_alpha`` and ``regularizer.cutoff.*``; at most one regulariser is on."""

    rdrop_alpha: float = 0.0
    cutoff_kind: str | None = None
    cutoff_ratio: float = 0.1
    cutoff_ce_weight: float = 1.0
    cutoff_js_weight: float = 1.0

    def __post_init__(self) -> None:
        alpha = self.rdrop_alpha
        if not isinstance(alpha, int | float) or alpha < 0:
            raise ConfigError(
                f"regularizer.rdrop_alpha={alpha!r} is invalid: it must be >= 0 (0 turns R-Drop off; "
                "the R-Drop paper uses 0.1 to 1 on GLUE, e.g. regularizer.rdrop_alpha=1.0)."
            )
        kind = self.cutoff_kind
        if kind is None:
            return
        if kind not in CUTOFF_KINDS:
            raise ConfigError(
                f"regularizer.cutoff.kind={kind!r} is unknown: use token or span "
                "(or null to turn Cutoff off)."
            )
        ratio = self.cutoff_ratio
        if not isinstance(ratio, int | float) or not 0.0 < ratio < 1.0:
            raise ConfigError(
                f"regularizer.cutoff.ratio={ratio!r} is invalid: it must be in (0, 1) (e.g. 0.1)."
            )
        if alpha > 0:
            raise ConfigError(
                "regularizer.rdrop_alpha and regularizer.cutoff.kind are both set: use one regulariser at "
                "a time (set regularizer.rdrop_alpha=0 or regularizer.cutoff.kind=null)."
            )

    @classmethod
    def from_mapping(cls, regularizer: Mapping[str, Any] | None) -> RegularizerSettings:
        """From the ``regularizer`` group (None or missing keys: off)."""
        regularizer = regularizer or {}
        cut = regularizer.get("cutoff") or {}
        return cls(
            rdrop_alpha=regularizer.get("rdrop_alpha") or 0.0,
            cutoff_kind=cut.get("kind"),
            cutoff_ratio=cut.get("ratio", 0.1),
            cutoff_ce_weight=cut.get("ce_weight", 1.0),
            cutoff_js_weight=cut.get("js_weight", 1.0),
        )
