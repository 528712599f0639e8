"""Callbacks that tests add to real train.py runs
(`+callbacks.<name>._target_=tests.helpers.callbacks.<Class>`), and the environment of such a run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L

from tests.helpers.runs import ROOT

PAUSE_AT = "GLUE_LORA_TEST_PAUSE_AT"  # global step at which to pause
PAUSE_FILE = "GLUE_LORA_TEST_PAUSE_FILE"  # written when paused
PAUSE_JOB = "GLUE_LORA_TEST_PAUSE_JOB"  # in a sweep: pause only in this job number


class PauseAtStep(L.Callback):
    """With $GLUE_LORA_TEST_PAUSE_AT set, wait before training that step until a SIGTERM arrives.

    It writes $GLUE_LORA_TEST_PAUSE_FILE when it starts waiting, so that a test knows exactly which
    steps are done when it kills the process. Without the variable it does nothing, so a run and
    its resumption can have the same config.
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        step = os.environ.get(PAUSE_AT)
        if step is None or trainer.global_step != int(step) or not _is_paused_job():
            return
        Path(os.environ[PAUSE_FILE]).write_text(f"{trainer.global_step}\n")
        while not trainer.received_sigterm:
            time.sleep(0.02)


def _is_paused_job() -> bool:
    job = os.environ.get(PAUSE_JOB)
    if job is None:
        return True
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().job.num == int(job)


class CrashAtStep(L.Callback):
    """Raise an error (as a bug or a lost GPU would) before training global step ``step``; with
    ``rank``, on that rank of a distributed run only; with ``seed``, only in the run of that seed;
    with ``marker``, write that file (its time: when the crash happened) first."""

    def __init__(
        self, step: int, rank: int | None = None, seed: int | None = None, marker: str | None = None
    ) -> None:
        self.step, self.rank, self.seed, self.marker = step, rank, seed, marker

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step or self.rank not in (None, trainer.global_rank):
            return
        if not _is_seed(self.seed):
            return
        if self.marker:
            Path(self.marker).write_text(f"{time.time()}\n")
        where = "" if self.rank is None else f" on rank {self.rank}"
        raise RuntimeError(f"CrashAtStep: simulated crash at step {self.step}{where}")


def subprocess_env(**extra: str) -> dict[str, str]:
    # One thread: the same float arithmetic in every process, and no oversubscribed CPU.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop(PAUSE_AT, None)
    return {**env, **extra}


HANG_VARIABLE = "GLUE_LORA_TEST_HANG"


class HangAtStep(L.Callback):
    """Block rank ``rank`` before global step ``step``, as a rank stuck in an NCCL collective is
    blocked: it ignores SIGTERM, and only being killed ends it. With ``seed``, only in the run of
    that seed (Lightning's ``seed_everything`` records it in ``PL_GLOBAL_SEED``). With ``job``, only
    in the sweep job of that directory name, and only while the variable ``HANG_VARIABLE`` is set."""

    def __init__(self, step: int, rank: int, seed: int | None = None, job: str | None = None) -> None:
        self.step, self.rank, self.seed, self.job = step, rank, seed, job

    def _in_job(self) -> bool:
        if self.job is None:
            return True
        from hydra.core.hydra_config import HydraConfig

        return (
            bool(os.environ.get(HANG_VARIABLE))
            and Path(HydraConfig.get().runtime.output_dir).name == self.job
        )

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        at = trainer.global_step == self.step and trainer.global_rank == self.rank
        if at and _is_seed(self.seed) and self._in_job():
            while True:
                time.sleep(0.1)


def _is_seed(seed: int | None) -> bool:
    return seed is None or os.environ.get("PL_GLOBAL_SEED") == str(seed)


class RecordLearningRate(L.Callback):
    """Write ``<out>/lr_rank<global rank>.txt``: the learning rate of the first optimizer step, as
    this process's optimizer has it (a search's trial must train its own rate on every rank)."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        lr = trainer.optimizers[0].param_groups[0]["initial_lr"]
        (self.out / f"lr_rank{trainer.global_rank}.txt").write_text(repr(lr))
