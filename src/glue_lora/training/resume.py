"""Continuing a killed run: which checkpoint, whether the config still matches, whether it finished.

Lightning restores weights, optimizer, scheduler, loop counters and (through
``data.datamodule.ResumableDataLoader``) the place inside the epoch; ``training.reliability`` records
what it leaves out (the random generators, the run's config) and saves a checkpoint on SIGTERM.
This module refuses a resume with another config, skips a finished run and trims the CSV log to
the checkpoint's step.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from glue_lora.settings.moved import current_key, current_target, with_method_group, without_moved_keys
from glue_lora.settings.run import ResumeSettings
from glue_lora.training.checkpointing import load_checkpoint
from glue_lora.training.csv_logger import CSVLogger
from glue_lora.utils.errors import ConfigError
from glue_lora.utils.redact import redact
from glue_lora.utils.run_files import CHECKPOINTS, LAST_CHECKPOINT, RESULTS, RUN_MARKERS, last_checkpoint

log = logging.getLogger(__name__)

# Settings that may differ between a run and its resumption: they change nothing that is trained.
MAY_CHANGE_ON_RESUME = (
    "resume",
    "ckpt_path",
    "dry_run",
    "checkpoint",
    "logger",
    "paths.output_dir",
    "paths.cache_dir",
    "data.cache_dir",
    "data.num_workers",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)
# Exit status after a SIGTERM, as a shell reports a process that the signal ended.
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM
CHECKPOINT_KEY = "glue_lora"


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, secrets masked: what checkpoints record of a run."""
    return redact(without_moved_keys(OmegaConf.to_container(cfg, resolve=True)))


def checkpoint_to_resume(resume: ResumeSettings, out_dir: Path) -> Path | None:
    """The checkpoint that ``resume``/``ckpt_path`` asks for, or None for a run from scratch."""
    ckpt_path = resume.ckpt_path
    if ckpt_path:
        path = Path(str(ckpt_path)).expanduser()
        path = last_checkpoint(path) if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(
                f"ckpt_path={ckpt_path}: there is no checkpoint {path}. Give a run directory that "
                f"holds {CHECKPOINTS}/{LAST_CHECKPOINT}, or a .ckpt file."
            )
        return path
    if resume.resume:
        path = last_checkpoint(out_dir)
        if path.is_file():
            return path
        log.warning(
            "resume=true but %s holds no checkpoint yet: training starts from the beginning.", out_dir
        )
    return None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Settings (dotted keys) whose values differ, except those in ``MAY_CHANGE_ON_RESUME``.

    A ``_target_`` recorded under the import path it had before the package's subpackages is
    compared under its current path, a key that moved (``train.*``) under its new key, and a config
    recorded before the ``method`` group under today's method where it is the same (``settings.moved``).
    """
    before, after = _flatten(with_method_group(old, new)), _flatten(new)
    before = {current_key(k): current_target(v) if k.endswith("_target_") else v for k, v in before.items()}
    changed = []
    for key in sorted(set(before) | set(after)):
        if any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE_ON_RESUME):
            continue
        if before.get(key, "<unset>") != after.get(key, "<unset>"):
            changed.append(f"{key}: {before.get(key, '<unset>')!r} -> {after.get(key, '<unset>')!r}")
    return changed


def check_resumable(checkpoint: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint that was not written by train.py or was trained with another config."""
    record = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(record, dict) or "config" not in record:
        raise ConfigError(
            f"{path} was not written by glue-lora's train.py (it has no record of its run's config), "
            "so it cannot be resumed. Give the checkpoint of a glue-lora run, or start a new run."
        )
    changes = config_changes(record["config"], config)
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ConfigError(
            f"Refusing to resume from {path}: the config differs from the one the run was trained with "
            f"({shown}). Resume with the original settings (the run's .hydra/config.yaml and "
            ".hydra/overrides.yaml), or start a new run in a new directory to train with new ones."
        )


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def finished_results(config: dict[str, Any], resume: ResumeSettings, out_dir: Path) -> dict[str, Any] | None:
    """With ``resume=true``, the results of a run that already finished in ``out_dir`` with ``config``
    (the run's resolved config, as ``run_config`` gives it).

    A re-run sweep with ``resume=true`` thus skips its finished jobs (their results.json stays as it
    is), resumes its killed ones from ``last.ckpt`` and runs the rest. A finished run of another
    config is refused, naming what differs. Without ``resume``, a sweep job whose directory already
    holds a run is refused (a single run is refused earlier, by ``ProtectRunDir``).
    """
    results_path = out_dir / RESULTS
    if not resume.resume:
        taken = [m for m in RUN_MARKERS if (out_dir / m).exists()]
        if taken and _in_multirun():
            raise ConfigError(
                f"The job directory {out_dir} already holds a run ({', '.join(taken)}); it is left "
                "untouched. To continue that sweep, re-run the same command with resume=true (finished "
                "jobs are skipped, killed ones resume from their last checkpoint); for a new sweep, give "
                "another hydra.sweep.dir (or leave it at its default, which is new for every sweep)."
            )
        return None
    if not results_path.is_file():
        return None
    import json

    results = json.loads(results_path.read_text())
    recorded = results.get("config")
    if recorded is None and last_checkpoint(out_dir).is_file():  # results.json of an older version
        recorded = (load_checkpoint(last_checkpoint(out_dir)).get(CHECKPOINT_KEY) or {}).get("config")
    if recorded is None:
        raise ConfigError(
            f"{results_path} records no config, so resume=true cannot tell whether it is this run. Move "
            "that directory away to train again, or leave resume out."
        )
    changes = config_changes(recorded, config)
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ConfigError(
            f"{out_dir} holds a finished run of another config ({shown}); it is left untouched. Resume "
            "with the original settings (the run's .hydra/config.yaml and .hydra/overrides.yaml; in a "
            "sweep, exactly the same command and hydra.sweep.dir), or start a new run in a new "
            "directory (a new hydra.sweep.dir for a different sweep)."
        )
    print(f"already finished with this config: {results_path} (resume=true skips it)")
    return results


@dataclass(frozen=True)
class ResumePoint:
    path: Path
    global_step: int  # optimizer steps the checkpoint holds


def prepare_resume(resume: ResumeSettings, config: dict[str, Any], out_dir: Path) -> ResumePoint | None:
    """The checkpoint to resume from, after checking that it is safe to load and matches ``config``."""
    path = checkpoint_to_resume(resume, out_dir)
    if path is None:
        return None
    checkpoint = load_checkpoint(path)
    check_resumable(checkpoint, config, path)
    step = int(checkpoint.get("global_step", 0))
    print(f"resuming from {path} (epoch {checkpoint.get('epoch')}, step {step})")
    return ResumePoint(path, step)


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: Any, resume: ResumePoint | None) -> None:
    """``trainer.fit``, continuing from ``resume`` if given; after SIGTERM exit with status 143.

    When resuming, CSV logs lose their rows of the steps after the checkpoint (they are trained
    again and logged again).
    """
    if resume is not None:
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.drop_rows_from(resume.global_step)
    try:
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(resume.path) if resume else None,
            weights_only=True,
        )
    except SIGTERMException:
        raise SystemExit(SIGTERM_EXIT_CODE) from None
