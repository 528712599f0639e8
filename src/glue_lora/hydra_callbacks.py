"""Hydra callbacks: run before Hydra writes anything into the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# Files whose presence means a directory already holds a run.
RUN_MARKERS = ("results.json", "checkpoints", "adapter")


class ProtectRunDir(Callback):
    """Refuse to start a single run in a directory that already holds an earlier run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume") or config.get("dry_run"):
            return
        run_dir = Path(str(config.hydra.run.dir))
        taken = [m for m in RUN_MARKERS if (run_dir / m).exists()]
        if taken:
            raise FileExistsError(
                f"The run directory {run_dir} already holds a run ({', '.join(taken)}); it is left "
                "untouched. Choose another hydra.run.dir (or leave it at its default, which is new "
                "for every run)."
            )
