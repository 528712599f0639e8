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


# The process's index among those of its node: Lightning's relaunch and torchrun, then SLURM's srun.
LOCAL_RANK_VARIABLES = ("LOCAL_RANK", "SLURM_LOCALID")


def local_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's index on its node (0 outside a distributed job): the device it trains on."""
    for name in LOCAL_RANK_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0
