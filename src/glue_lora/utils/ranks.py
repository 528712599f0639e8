"""Which process of a distributed job this is, read from the launcher's environment.

Lightning's own relaunch (``LOCAL_RANK``, ``NODE_RANK``), ``torchrun`` (``RANK``, ``LOCAL_RANK``) and
SLURM (``SLURM_PROCID``) each say it their own way, and the code that must act on rank 0 alone
(run-directory protection, summaries, W&B, saving) often runs before any Trainer exists to ask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Each names a rank that is 0 only on the process that acts for the job.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_rank_zero(env: Mapping[str, str] = os.environ) -> bool:
    """True in the one process of a job that writes shared files (every process of a non-distributed run)."""
    return all(env.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def launched_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank as its launcher numbered it (torchrun's, srun's global rank, else the local)."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def launched_world_size(env: Mapping[str, str] = os.environ) -> int:
    """How many processes the launcher started for this run (1 when none did)."""
    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def local_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank on its node (``LOCAL_RANK`` of Lightning, torchrun; srun's ``SLURM_LOCALID``)."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0
