"""Free disk space: what a run will write, a warning before training, a clear error when a write fails.

A write that runs out of space fails deep inside torch (``RuntimeError: [enforce fail at
inline_container.cc:...] unexpected pos ...``), safetensors or ``json``; ``disk_full_error`` turns
any of these into one message naming the file, the free space and the size needed.
"""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glue_lora.utils.errors import DiskFullError

log = logging.getLogger(__name__)

# What torch, safetensors and the OS say when a write runs out of space.
_DISK_FULL_TEXT = (
    "No space left on device",
    "Disk quota exceeded",
    "unexpected pos",  # torch's zip writer: fewer bytes reached the file than it wrote
    "PytorchStreamWriter failed writing",
    "os error 28",
)
# A checkpoint holds the trained weights and AdamW's two moments, plus a little bookkeeping.
CHECKPOINT_COPIES_OF_WEIGHTS = 3
# checkpoints/ holds best.ckpt and last.ckpt, and a third while one is written beside its old copy.
CHECKPOINT_FILES = 3
LOG_BYTES = 8 * 2**20  # CSV log, train.log, .hydra/, results.json: generous


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (OSError, torch's RuntimeError, safetensors' error) means the disk is full."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(err) for text in _DISK_FULL_TEXT)


def free_bytes(path: str | Path) -> int:
    """Free space on the file system of ``path`` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors inside ``obj`` (nested dicts, lists, tuples): about its size on disk."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def disk_full_error(path: str | Path, needed: int | None, err: BaseException) -> DiskFullError:
    """The error for a write of ``path`` that ran out of space; the previous file is untouched."""
    path = Path(path)
    size = f"about {format_bytes(needed)} needed" if needed else "the size needed is unknown"
    return DiskFullError(
        f"Could not write {path}: the disk is full ({format_bytes(free_bytes(path.parent))} free on "
        f"its file system, {size}; {type(err).__name__}: {str(err).strip().splitlines()[0][:200]}). "
        "The previous version of the file, if any, is intact. Free some space (old runs under outputs/ "
        "and multirun/, their checkpoints/ first), or write the run elsewhere with hydra.run.dir=..., "
        "then resume with resume=true."
    )


def run_bytes(trainable: int, total: int, full_model_saved: bool, bytes_per_param: int = 4) -> int:
    """What a training run writes at its peak: checkpoints, the adapter (twice while it is swapped), logs."""
    checkpoint = CHECKPOINT_COPIES_OF_WEIGHTS * trainable * bytes_per_param + 2**16
    adapter = (total if full_model_saved else trainable) * bytes_per_param
    return CHECKPOINT_FILES * checkpoint + 2 * adapter + LOG_BYTES


def warn_if_low(out_dir: str | Path, needed: int) -> bool:
    """Log a warning when ``out_dir``'s file system has less than ``needed`` free; True if it warned."""
    free = free_bytes(out_dir)
    if free >= needed:
        return False
    log.warning(
        "Only %s free where this run writes (%s); it will write about %s (checkpoints, adapter, logs). "
        "Free some space or choose another hydra.run.dir, or the run will stop when a write fails.",
        format_bytes(free),
        out_dir,
        format_bytes(needed),
    )
    return True
