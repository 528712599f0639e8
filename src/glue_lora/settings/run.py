"""Run-level settings read from the top of the config (train.yaml's own keys)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResumeSettings:
    """``resume`` and ``ckpt_path``: whether and from which checkpoint a run continues."""

    resume: bool = False
    ckpt_path: str | None = None  # a run directory or a .ckpt file

    def __post_init__(self) -> None:
        object.__setattr__(self, "resume", bool(self.resume))
        object.__setattr__(self, "ckpt_path", str(self.ckpt_path) if self.ckpt_path else None)
