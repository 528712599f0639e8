"""The processes (ranks) of one distributed job of a sweep, started and watched by the sweep's process.

Lightning's launcher makes the process that calls ``Trainer.fit`` rank 0 and starts the other ranks
by running the script again with its whole command line; in a sweep (``-m``) every rank then runs
the whole sweep (Lightning PR 18175, hydra issue 2070). And since rank 0 would be the sweep's own
process, a rank that dies leaves it blocked in a collective until NCCL's timeout, the only way out
being to kill it, the sweep with it (what Lightning's observer does). So in a sweep every rank of a
DDP job is a single run of that job (``python train.py <the job's overrides>`` in the job's
directory), started here with the variables Lightning's launcher sets (``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``, so Lightning starts no process itself), and the
sweep's process only waits: when a rank fails, the others are killed at once, the job is recorded as
failed and the sweep goes on with its next job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from glue_lora.training.batching import count_devices
from glue_lora.utils.errors import JobRankError

# The job's run directory reaches the ranks through the environment (hydra.run.dir=${oc.env:...}),
# so no path needs quoting for Hydra's override grammar.
RUN_DIR_VARIABLE = "GLUE_LORA_JOB_RUN_DIR"
SWEEP_DIR_VARIABLE = "GLUE_LORA_JOB_SWEEP_DIR"
# Hydra settings the rank command sets itself (a rank is a single run in the job's directory).
RANK_OWN_HYDRA_KEYS = (
    "hydra.mode",
    "hydra.run.dir",
    "hydra.sweep.dir",
    "hydra.output_subdir",
    "hydra.job.name",
)
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1"


def relaunches_script(strategy: Any) -> bool:
    """Whether Lightning would start the other ranks of ``trainer.strategy`` by re-running the script."""
    if strategy is None:
        return True  # "auto": DDP as soon as there are several devices
    if isinstance(strategy, Mapping):  # a strategy built from _target_
        start = str(strategy.get("start_method") or "popen")
        return "Strategy" in str(strategy.get("_target_", "")) and start == "popen"
    name = str(strategy)
    if name == "auto":
        return True
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, StrategyRegistry

    if name not in StrategyRegistry:
        return False  # a name Lightning will refuse itself
    entry = dict.__getitem__(StrategyRegistry, name)  # its .get() builds the strategy
    start = str(entry["init_params"].get("start_method", "popen"))
    return issubclass(entry["strategy"], DDPStrategy | FSDPStrategy) and start == "popen"


def started_by_a_launcher() -> bool:
    """Whether this process is a rank that torchrun, SLURM's srun, LSF, MPI or Lightning started.

    The checks are Lightning's own (the cluster environments it picks from): in such a process
    Lightning starts no processes, and neither do we.
    """
    if "LOCAL_RANK" in os.environ:
        return True
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    environments = (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)
    return any(environment.detect() for environment in environments)


def processes_to_start(trainer: Mapping[str, Any]) -> int:
    """How many ranks of a sweep job this process must start: the job's processes on this node when
    Lightning would start them by re-running the script, else 0 (the job runs in this process)."""
    nodes = int(trainer.get("num_nodes", 1) or 1)
    if nodes != 1 or not relaunches_script(trainer.get("strategy", "auto")) or started_by_a_launcher():
        return 0
    n = count_devices(trainer)
    return n if n > 1 else 0


def script_command() -> list[str]:
    """This process's interpreter and script (``python train.py``), found as Lightning's launcher does."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is None:
        return [sys.executable, os.path.abspath(sys.argv[0])]
    return [sys.executable, "-m", spec.name]


def rank_overrides(task: Sequence[str], hydra: Sequence[str]) -> list[str]:
    """What a rank is started with: the job's overrides and the sweep's ``hydra.*`` ones (a config
    value such as an Optuna study's storage may interpolate ``hydra.sweeper.*``), pinned to the
    sweep's own directory, less the settings that make each rank a single run of its own."""
    kept = [o for o in hydra if str(o).lstrip("+~").split("=", 1)[0] not in RANK_OWN_HYDRA_KEYS]
    return [*task, *kept, f"hydra.sweep.dir=${{oc.env:{SWEEP_DIR_VARIABLE}}}"]


def rank_command(script: Sequence[str], overrides: Sequence[str], rank: int) -> list[str]:
    """The command line of one rank: a single run of the job's overrides in the job's run directory.

    Hydra writes nothing to ``.hydra/`` (the sweep saved the job's config there); rank 0 logs to the
    job's ``train.log`` and rank r to ``train_ddp_process_r.log``, as in a single DDP run.
    ``hydra.mode=RUN``: an experiment that sets ``hydra.mode: MULTIRUN`` would make each rank a sweep.
    """
    run_dir = f"hydra.run.dir=${{oc.env:{RUN_DIR_VARIABLE}}}"
    command = [*script, *overrides, "hydra.mode=RUN", run_dir, "hydra.output_subdir=null"]
    if rank > 0:
        command.append(f"hydra.job.name=train_ddp_process_{rank}")
    return command


def rank_environment(
    env: Mapping[str, str], rank: int, world_size: int, run_dir: str, port: int, sweep_dir: str = ""
) -> dict[str, str]:
    """The environment of one rank: what Lightning's launcher gives its processes, and the run dir."""
    return {
        **env,
        "MASTER_ADDR": env.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": str(port),
        "NODE_RANK": "0",
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        RUN_DIR_VARIABLE: run_dir,
        SWEEP_DIR_VARIABLE: sweep_dir,
    }


@dataclass
class _Rank:
    rank: int
    process: subprocess.Popen
    tail: deque = field(default_factory=lambda: deque(maxlen=64))  # last chunks of its stderr
    reader: threading.Thread | None = None

    def error_line(self) -> str:
        """The last line of its stderr that says what went wrong (the exception, or our ``error:``)."""
        text = b"".join(self.tail).decode("utf-8", "replace").replace("\r", "\n")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(HYDRA_HINT)]
        return lines[-1] if lines else "(no error message on its stderr)"


def _forward(stream: Any, rank: _Rank, sink: Any) -> None:
    # Raw chunks, not lines: a progress bar's carriage returns pass through as they come.
    for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
        rank.tail.append(chunk)
        sink.write(chunk)
        sink.flush()


def run_ranks(
    commands: Sequence[Sequence[str]],
    envs: Sequence[Mapping[str, str]],
    cwd: str | None = None,
    poll_seconds: float = 0.2,
    stderr_sink: Any | None = None,
) -> None:
    """Run one job's ranks (rank r: ``commands[r]`` with ``envs[r]``) to their end.

    Their stdout is this process's; their stderr is passed through and its end kept. When a rank
    exits with an error, the others are killed (SIGKILL: a rank blocked in a collective does not
    react to SIGTERM) and ``JobRankError`` names the rank and its error. A SIGTERM to this process
    (pre-emption) is passed on to every rank, which saves its checkpoint; then this one exits 143.
    """
    sink = stderr_sink or sys.stderr.buffer
    ranks: list[_Rank] = []
    forwarded: list[int] = []
    restore = _forward_sigterm(lambda: ranks, forwarded)
    try:
        for rank, (command, env) in enumerate(zip(commands, envs, strict=True)):
            process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stderr=subprocess.PIPE)
            started = _Rank(rank, process)
            reader = threading.Thread(target=_forward, args=(process.stderr, started, sink), daemon=True)
            started.reader = reader
            started.reader.start()
            ranks.append(started)
        failed = _wait(ranks, poll_seconds, forwarded)
    finally:
        _kill_running(ranks)
        restore()
    for r in ranks:
        if r.reader is not None:
            r.reader.join(timeout=5)
    if forwarded:
        raise SystemExit(128 + signal.SIGTERM)
    if failed is not None:
        others = "the job's other ranks were stopped" if len(ranks) > 1 else "it was the job's only rank"
        raise JobRankError(
            f"rank {failed.rank} of {len(ranks)} exited with code {failed.process.returncode}: "
            f"{failed.error_line()} ({others}; its full error is in the sweep's output above)."
        )


# After a SIGTERM is passed on: how long the ranks may take to save their checkpoints and exit.
SIGTERM_GRACE_SECONDS = 120.0


def _wait(ranks: list[_Rank], poll_seconds: float, forwarded: list[int]) -> _Rank | None:
    """Wait until every rank has exited cleanly (None) or one has failed (that rank); after a
    passed-on SIGTERM, until all have exited or the grace period is over."""
    deadline = None
    while True:
        codes = [r.process.poll() for r in ranks]
        if forwarded:
            deadline = deadline or time.monotonic() + SIGTERM_GRACE_SECONDS
            if all(code is not None for code in codes) or time.monotonic() > deadline:
                return None
            time.sleep(poll_seconds)
            continue
        failed = [r for r, code in zip(ranks, codes, strict=True) if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code == 0 for code in codes):
            return None
        time.sleep(poll_seconds)


def _kill_running(ranks: list[_Rank]) -> None:
    for r in ranks:
        if r.process.poll() is None:
            r.process.kill()
    for r in ranks:
        r.process.wait()


def _forward_sigterm(ranks: Callable[[], list[_Rank]], forwarded: list[int]) -> Callable[[], None]:
    """Pass a SIGTERM on to the ranks while they run; returns what restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread

    def handler(signum: int, frame: Any) -> None:
        forwarded.append(signum)
        for r in ranks():
            if r.process.poll() is None:
                r.process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
