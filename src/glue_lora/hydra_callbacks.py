"""Hydra callbacks: run before Hydra writes anything into the run directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

# Files whose presence means a directory already holds a run.
RUN_MARKERS = ("results.json", "checkpoints", "adapter")

_refusal: str | None = None


def run_dir_refusal() -> str | None:
    """Why the current run's directory was refused, or None; the run raises it before any work."""
    return _refusal


class ProtectRunDir(Callback):
    """Refuse to start a single run in a directory that already holds an earlier run.

    Hydra only warns when a callback raises, so instead this stops Hydra from writing its config
    into the directory and leaves a refusal for the task function to raise.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _refusal
        _refusal = None
        # DDP workers (LOCAL_RANK set by Lightning) re-enter the directory their rank 0 created.
        if config.get("resume") or config.get("dry_run") or "LOCAL_RANK" in os.environ:
            return
        run_dir = Path(str(config.hydra.run.dir))
        taken = [m for m in RUN_MARKERS if (run_dir / m).exists()]
        if taken:
            _refusal = (
                f"The run directory {run_dir} already holds a run ({', '.join(taken)}); it is left "
                "untouched. Choose another hydra.run.dir, or leave it at its default, which is new "
                "for every run."
            )
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = None
