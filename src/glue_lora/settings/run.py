"""Run-level settings read from the top of the config (train.yaml's own keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResumeSettings:
    """``resume`` and ``ckpt_path``: whether and from which checkpoint a run continues."""

    resume: bool = False
    ckpt_path: str | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> ResumeSettings:
        ckpt_path = cfg.get("ckpt_path")
        return cls(bool(cfg.get("resume")), str(ckpt_path) if ckpt_path else None)
