"""The Optuna study of a search, as the sweeper and its trials' jobs open it.

The Hydra Optuna sweeper does not hand the trial to the job it launches; a job reaches its trial
through the study's storage URL, the study name and the trial's number, which the sweeper puts in
the job's config (``hparams_search.trial``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

# Trial user attributes: which process runs the trial, and where its pruning callback stopped it.
WORKER = "worker"
PRUNED_AT_STEP = "pruned_at_step"


def ensure_sqlite_dir(storage: str | None) -> None:
    """SQLite does not create the directory of its file: make it (the sweep dir, usually)."""
    prefix = "sqlite:///"
    if storage and storage.startswith(prefix):
        Path(storage[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def worker_id() -> str:
    """``host:pid:start``: the process's start (``/proc``) tells it apart from a later process that
    got the same pid, as a fresh machine's next session often does."""
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"


def _started(pid: int) -> str:
    """When process ``pid`` started, in clock ticks after boot; '' where there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the command's parentheses


def _alive_here(worker: str) -> bool:
    host, _, rest = worker.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's process: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return not started or started == _started(int(pid))


def fail_killed_trials(study: Any) -> list[dict[str, Any]]:
    """Mark the trials a killed search left RUNNING as FAIL; returns their parameters.

    A trial counts as killed when the process that ran it (its ``worker`` attribute) no longer runs
    on this machine; trials of live processes, here or on other machines sharing the study, are left.
    """
    from optuna.trial import TrialState

    killed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _alive_here(str(trial.user_attrs.get(WORKER, ""))):
            study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
            killed.append(dict(trial.params))
    return killed


def open_trial(storage: str, study_name: str, number: int, pruner: Any = None) -> Any:
    """The running trial ``number`` of the study, to report to from inside its job."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)
