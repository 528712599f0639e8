"""Hydra callbacks: protect a run directory before a run; summarise a sweep after each of its jobs."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from glue_lora.utils.errors import RunDirError
from glue_lora.utils.ranks import is_rank_zero, launched_rank, launched_world_size
from glue_lora.utils.redact import secret_overrides
from glue_lora.utils.run_files import CHECKPOINTS, LAST_CHECKPOINT, RUN_MARKERS
from glue_lora.utils.run_lock import RunDirLock
from glue_lora.utils.shareable import shareable_path

log = logging.getLogger(__name__)


def _exit_on_error(hook: Callable[..., None]) -> Callable[..., None]:
    # Hydra turns an exception in a callback into a warning and runs the job anyway; a refusal
    # must stop the process instead, before Hydra creates or writes anything.
    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except RunDirError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def run_dir_of_checkpoint(ckpt_path: str) -> Path | None:
    """The run directory that ``ckpt_path`` (a run directory or a .ckpt file) belongs to, if any."""
    path = Path(ckpt_path).expanduser().absolute()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent.parent if path.parent.name == CHECKPOINTS else None
    raise RunDirError(
        f"ckpt_path={ckpt_path} does not exist. Give the directory of the run to resume (it holds "
        f"{CHECKPOINTS}/{LAST_CHECKPOINT}) or one of its checkpoint files."
    )


def _user_set(config: DictConfig, key: str) -> bool:
    overrides = OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False)
    return any(str(o).lstrip("+").startswith(f"{key}=") for o in overrides)


def _sweep_overrides(overrides: Any) -> set[str]:
    return {str(o) for o in overrides or [] if not str(o).lstrip("+").startswith(("resume=", "ckpt_path="))}


def _resume_sweep_hint(config: DictConfig) -> str:
    """What to run to resume a sweep: the latest earlier sweep of the same overrides, where there is one.

    Jobs live in ``<sweep dir>/<job number>``; the default sweep dir has the start time in its name,
    so a re-run only finds the killed sweep's jobs when it is given that directory.
    """
    import yaml

    wanted = _sweep_overrides(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    root = Path(str(config.hydra.sweep.dir)).parent.parent
    candidates = []
    for saved in [*root.glob("*/*/multirun.yaml"), *root.glob("*/multirun.yaml")]:
        try:
            task = (yaml.safe_load(saved.read_text()) or {})["hydra"]["overrides"]["task"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            continue
        if _sweep_overrides(task) == wanted:
            candidates.append(saved.parent)
    found = max(candidates, key=lambda p: p.stat().st_mtime, default=None)
    hint = (
        f"The latest sweep with these overrides is {found}: add hydra.sweep.dir={found}."
        if found
        else f"No earlier sweep with these overrides was found under {root}; add hydra.sweep.dir=<its dir>."
    )
    return (
        "resume=true in a sweep (-m) continues an earlier sweep in its own directory, which the command "
        f"must name (the default directory is new for every sweep). {hint} Finished jobs are then skipped, "
        "killed ones resume from their last checkpoint, and the rest run."
    )


class ProtectRunDir(Callback):
    """Keep every run in its own directory; a resumed run goes on in the directory of the killed one.

    Without ``resume``/``ckpt_path`` a directory that already holds a run is refused. With them
    the run directory becomes the checkpoint's, and Hydra writes this attempt's config to
    ``.hydra/resume-<n>/`` so that ``.hydra/`` keeps the config the run started with.
    Also refuses literal secrets on the command line (Hydra would save them in overrides.yaml).
    """

    @_exit_on_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_secret_overrides(config)
        if config.get("resume") and not _user_set(config, "hydra.sweep.dir"):
            raise RunDirError(_resume_sweep_hint(config))

    def __init__(self) -> None:
        self.lock: RunDirLock | None = None

    @_exit_on_error
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_secret_overrides(config)
        _one_run_dir_for_all_ranks(config)
        if config.get("dry_run") or not is_rank_zero():
            return  # a DDP worker (rank > 0) joins the run directory of rank 0, which holds its lock
        resuming = bool(config.get("ckpt_path") or config.get("resume"))
        if resuming:
            self._prepare_resume(config)
        run_dir = Path(str(config.hydra.run.dir))
        # First: a run still writing into the directory is refused before its files are judged.
        self.lock = RunDirLock(run_dir)
        self.lock.acquire()
        taken = [m for m in RUN_MARKERS if (run_dir / m).exists()]
        if taken and not resuming:
            self.lock.release()
            raise RunDirError(
                f"The run directory {run_dir} already holds a run ({', '.join(taken)}); it is left "
                "untouched. Add resume=true to continue that run from its last checkpoint, or choose "
                "another hydra.run.dir (or leave it at its default, which is new for every run)."
            )

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()

    @staticmethod
    def _prepare_resume(config: DictConfig) -> None:
        ckpt_path = config.get("ckpt_path")
        if ckpt_path:
            run_dir = run_dir_of_checkpoint(str(ckpt_path))
            if run_dir is None:  # a checkpoint outside any run: a new run starts from it
                return
            current = Path(str(config.hydra.run.dir)).expanduser().absolute()
            if _user_set(config, "hydra.run.dir") and current != run_dir:
                raise RunDirError(
                    f"ckpt_path={ckpt_path} belongs to the run in {run_dir}, but hydra.run.dir={current}. "
                    "Leave hydra.run.dir out: a resumed run goes on in its own directory."
                )
            with read_write(config.hydra.run):
                config.hydra.run.dir = str(run_dir)
        elif not _user_set(config, "hydra.run.dir"):
            raise RunDirError(
                "resume=true needs the directory of the run to continue: add "
                "hydra.run.dir=<run dir> (or give ckpt_path=<run dir> instead of resume=true)."
            )
        run_dir = Path(str(config.hydra.run.dir))
        subdir = config.hydra.output_subdir
        if subdir is not None and (run_dir / str(subdir)).is_dir():
            n = 1
            while (run_dir / str(subdir) / f"resume-{n}").exists():
                n += 1
            with read_write(config.hydra):
                config.hydra.output_subdir = f"{subdir}/resume-{n}"


def _one_run_dir_for_all_ranks(config: DictConfig) -> None:
    """The ranks that torchrun or srun start each compose their own config: they must name one run
    directory (the default has the start time in it, which differs between processes). Ranks other
    than 0 join it: they write no ``.hydra/`` and log to ``<job name>_ddp_process_<rank>.log``."""
    processes = launched_world_size()
    if processes > 1 and not _user_set(config, "hydra.run.dir"):
        raise RunDirError(
            f"This run has {processes} processes started by a launcher (torchrun, srun), "
            "and each would pick its own default run directory from its start time. Name the run's "
            "directory: add hydra.run.dir=outputs/<name> (under SLURM e.g. "
            "hydra.run.dir=outputs/slurm-$SLURM_JOB_ID)."
        )
    if is_rank_zero():
        return
    with read_write(config.hydra):
        config.hydra.output_subdir = None
        if "_ddp_process_" not in str(config.hydra.job.name):
            config.hydra.job.name = f"{config.hydra.job.name}_ddp_process_{launched_rank()}"


def _refuse_secret_overrides(config: DictConfig) -> None:
    # unresolved: an override `key=${oc.env:NAME}` is saved as written, which is safe
    found = secret_overrides(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    if found:
        raise RunDirError(
            f"The override(s) {found} put a secret on the command line, where Hydra would save it "
            "in .hydra/overrides.yaml. Set it in the environment instead (e.g. WANDB_API_KEY, which "
            "wandb reads itself) or reference it as ${oc.env:NAME}."
        )


class SweepSummary(Callback):
    """Keep ``summary.csv`` and ``summary.md`` of a multirun up to date in its sweep directory.

    Rewritten after every job, not only when the sweep ends: another sweeper than Hydra's basic one
    (Optuna, say) re-raises a failed job's error, and ``on_multirun_end`` never runs then. A failed job
    leaves ``failed.json`` (its error's first line) in its directory and is listed. A basic sweep ends
    with a table of its failed jobs and exit code 1, not a traceback; another sweeper that gets to its
    end accepted its failures (past ``max_failure_rate`` it re-raises), so the table is a warning there.
    Only rank 0 writes, where a launcher runs each job in several processes (submitit's
    ``tasks_per_node``, a sweep under ``torchrun``).
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN or not is_rank_zero():
            return
        if job_return.status == JobStatus.FAILED:
            from glue_lora.reports.runs import write_failure

            # ``return_value`` would re-raise the error; the exception itself is what we record.
            error = job_return._return_value
            try:
                write_failure(config.hydra.runtime.output_dir, error)
            except Exception as err:
                log.warning("Could not record the failure in %s: %s", config.hydra.runtime.output_dir, err)
            else:
                _log_failure(error)
                if _is_basic_sweeper(config):
                    # Recorded: Hydra's BasicSweeper need not re-raise it as a traceback once the other
                    # jobs are done; on_multirun_end then ends the sweep with the table of failures.
                    job_return.status = JobStatus.COMPLETED
                    job_return.return_value = None
        self._write(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_rank_zero():
            return
        from glue_lora.reports.runs import failed_jobs_table

        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._write(sweep_dir)
        # Read from the sweep directory: a parallel launcher ran on_job_end in its worker processes.
        if (table := failed_jobs_table(sweep_dir)) and not _is_basic_sweeper(config):
            log.warning("%s", table)  # a failed trial never reruns: exit 1 would follow every start
        elif table:
            print(f"error: {table}", file=sys.stderr)
            raise SystemExit(1)  # not an Exception: Hydra's callback runner would turn it into a warning

    @staticmethod
    def _write(sweep_dir: Path) -> None:
        from glue_lora.reports.summary import SUMMARY_MD, summarise
        from glue_lora.utils.artifacts import locked

        try:
            with locked(sweep_dir):
                summarise([sweep_dir], sweep_dir, title=f"Sweep {shareable_path(sweep_dir)}")
            log.info("Sweep summary: %s", sweep_dir / SUMMARY_MD)
        except Exception as err:  # a summary must never fail a sweep; `glue-lora report` can redo it
            log.warning("Could not write the sweep summary in %s: %s", sweep_dir, err)


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _is_basic_sweeper(config: DictConfig) -> bool:
    return str(config.hydra.sweeper.get("_target_", "")) == BASIC_SWEEPER


def _log_failure(error: BaseException) -> None:
    """A fixable error in one line; anything else (a bug, a lost GPU) with its traceback, for the
    job's log: the sweep's end lists only each error's first line."""
    from glue_lora.utils.errors import GlueLoraError

    if isinstance(error, GlueLoraError):
        log.error("The job failed: %s", error)
    else:
        log.error("The job failed:", exc_info=(type(error), error, error.__traceback__))


class OneGpuPerJob(Callback):
    """In a sweep on a machine with several GPUs, give each job process a GPU of its own.

    With ``hydra/launcher=joblib hydra.launcher.n_jobs=<number of GPUs>`` that many jobs run at
    once, one per GPU (see ``glue_lora.training.gpus``). Jobs that ask for several devices, or for the CPU,
    are left alone; so is a machine with one GPU, and a SLURM job (SLURM already gives each job its
    GPUs). ``hydra.callbacks.gpu_per_job.enabled=false`` turns it off.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if not self.enabled or config.hydra.mode != RunMode.MULTIRUN:
            return
        trainer = config.get("trainer") or {}
        if trainer.get("devices", 1) != 1 or str(trainer.get("accelerator", "auto")) == "cpu":
            return
        from glue_lora.training.gpus import pin_job_to_gpu

        pin_job_to_gpu(int(config.hydra.job.num))
