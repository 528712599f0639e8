"""One GPU per job when a sweep runs several jobs at once on one machine (the joblib launcher).

Each job process claims a GPU with a lock file and sees only that GPU (``CUDA_VISIBLE_DEVICES``), so
`hydra.launcher.n_jobs=<number of GPUs>` runs that many jobs side by side, one on each GPU. Job
``k`` tries GPU ``k mod N`` first, then the next free one, so jobs spread round-robin and a job that
starts when an earlier one ends takes the GPU it freed. A worker process keeps its GPU for its
life: CUDA reads ``CUDA_VISIBLE_DEVICES`` once per process, so a later job in the same worker could
not move. Locks are released when their process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import IO, Any

from glue_lora.utils.ranks import local_device_index

log = logging.getLogger(__name__)

PROC_GPUS = Path("/proc/driver/nvidia/gpus")
# (GPU id, open lock file) of this process, once claimed
_claimed: tuple[str, IO] | None = None


def visible_gpus(env: MutableMapping[str, str] = os.environ, proc_gpus: Path = PROC_GPUS) -> list[str]:
    """The GPU ids this process may use, without initialising CUDA (which would fix them for good)."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [d.strip() for d in listed.split(",") if d.strip()]
        return [] if ids[:1] == ["-1"] else ids
    return [str(i) for i in range(len(list(proc_gpus.iterdir())))] if proc_gpus.is_dir() else []


def device_order(job_num: int, n_devices: int) -> list[int]:
    """The order in which job ``job_num`` tries the ``n_devices`` GPUs: its own (k mod N) first."""
    return [(job_num + i) % n_devices for i in range(n_devices)]


def lock_dir() -> Path:
    """Where the GPU locks live: one directory per user and machine, shared by all sweeps."""
    return Path(
        os.environ.get("GLUE_LORA_GPU_LOCKS") or Path(tempfile.gettempdir()) / f"glue_lora-gpus-{os.getuid()}"
    )


def claim_gpu(gpus: list[str], job_num: int, locks: Path) -> tuple[str, IO] | None:
    """Lock the first free GPU in ``device_order``: (GPU id, the open lock), or None if all are taken."""
    locks.mkdir(parents=True, exist_ok=True)
    for i in device_order(job_num, len(gpus)):
        handle = (locks / f"gpu-{gpus[i]}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return gpus[i], handle
    return None


def pin_job_to_gpu(
    job_num: int, env: MutableMapping[str, str] = os.environ, locks: Path | None = None
) -> str | None:
    """Make this job process see one GPU of several; returns its id (None: one GPU or none, nothing done)."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    gpus = visible_gpus(env)
    if len(gpus) < 2:
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        log.warning("CUDA is already initialised in this process: job %d keeps the GPUs it has.", job_num)
        return None
    claim = claim_gpu(gpus, job_num, locks or lock_dir())
    if claim is None:
        gpu = gpus[job_num % len(gpus)]
        log.warning(
            "All %d GPUs are taken by other jobs (more jobs at once than GPUs: hydra.launcher.n_jobs); "
            "job %d shares GPU %s.",
            len(gpus),
            job_num,
            gpu,
        )
    else:
        _claimed = claim
        gpu = claim[0]
        log.info("Job %d runs on GPU %s (CUDA_VISIBLE_DEVICES=%s).", job_num, gpu, gpu)
    env["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def rank_device(
    trainer: Mapping[str, Any], env: Mapping[str, str] = os.environ, cuda: bool | None = None
) -> str | None:
    """The GPU this rank trains on (``cuda:<id>``), before Lightning has set it; None on the CPU.

    As Lightning assigns them: local rank r gets the r-th of ``trainer.devices`` when that lists
    ids (``[2, 3]``, ``"2,3"``), else GPU r of the visible ones.
    """
    import torch

    if str(trainer.get("accelerator", "auto")) not in ("auto", "gpu", "cuda"):
        return None
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return None
    return f"cuda:{local_device_index(trainer.get('devices', 'auto'), env)}"
