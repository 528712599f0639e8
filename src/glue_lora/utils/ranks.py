"""Which process of a distributed job this is, read from the launcher's environment.

Lightning's own relaunch (``LOCAL_RANK``, ``NODE_RANK``), ``torchrun`` (``RANK``, ``LOCAL_RANK``) and
SLURM (``SLURM_PROCID``) each say it their own way, and the code that must act on rank 0 alone
(run-directory protection, summaries, W&B, saving) often runs before any Trainer exists to ask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

# Each names a rank that is 0 only on the process that acts for the job.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_rank_zero(env: Mapping[str, str] = os.environ) -> bool:
    """True in the one process of a job that writes shared files (every process of a non-distributed run)."""
    return all(env.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def _first_number(env: Mapping[str, str], names: Sequence[str], default: int) -> int:
    for name in names:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank as its launcher numbered it (torchrun's, srun's global rank, else the local)."""
    return _first_number(env, ("RANK", "SLURM_PROCID", "LOCAL_RANK"), 0)


def launched_world_size(env: Mapping[str, str] = os.environ) -> int:
    """How many processes the launcher started for this run (1 when none did)."""
    return _first_number(env, ("WORLD_SIZE", "SLURM_NTASKS"), 1)


def local_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's index on its node (0 outside a distributed job): the device it trains on.

    ``LOCAL_RANK`` of Lightning's relaunch and torchrun, else srun's ``SLURM_LOCALID``.
    """
    return _first_number(env, ("LOCAL_RANK", "SLURM_LOCALID"), 0)


def local_device_index(devices: Any, env: Mapping[str, str] = os.environ) -> int:
    """The GPU index this rank trains on, as Lightning assigns them: local rank r gets the r-th entry
    of ``trainer.devices`` when that lists ids (``[2, 3]``, ``"2,3"``), else GPU r."""
    rank = local_rank(env)
    if isinstance(devices, str) and "," in devices:
        devices = [int(d) for d in devices.split(",") if d.strip()]
    ids = list(devices) if isinstance(devices, Sequence) and not isinstance(devices, str) else []
    return int(ids[rank]) if rank < len(ids) else rank
