"""Hydra callbacks: protect a run directory before a run; summarise a sweep after each of its jobs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)

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


class SweepSummary(Callback):
    """Keep ``summary.csv`` and ``summary.md`` of a multirun up to date in its sweep directory.

    Rewritten after every job, not only when the sweep ends: Hydra's BasicSweeper re-raises a failed
    job's error once its batch is done, so ``on_multirun_end`` never runs for a sweep with a failure.
    A failed job leaves ``failed.json`` (its error's first line) in its directory and is listed.
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.FAILED:
            from glue_lora.summary import write_failure

            try:
                # ``return_value`` would re-raise the error; the exception itself is what we record.
                write_failure(config.hydra.runtime.output_dir, job_return._return_value)
            except Exception as err:
                log.warning("Could not record the failure in %s: %s", config.hydra.runtime.output_dir, err)
        self._write(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(Path(str(config.hydra.sweep.dir)))

    @staticmethod
    def _write(sweep_dir: Path) -> None:
        from glue_lora.summary import SUMMARY_MD, locked, summarise

        try:
            with locked(sweep_dir):
                summarise([sweep_dir], sweep_dir, title=f"Sweep {sweep_dir}")
            log.info("Sweep summary: %s", sweep_dir / SUMMARY_MD)
        except Exception as err:  # a summary must never fail a sweep; `glue-lora report` can redo it
            log.warning("Could not write the sweep summary in %s: %s", sweep_dir, err)
