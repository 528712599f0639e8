"""What a training run writes into its directory, named in one place.

<run dir>/results.json              the run's results (written last: the run finished)
<run dir>/failed.json               a sweep job's error, when it failed
<run dir>/checkpoints/best.ckpt     Lightning checkpoints: the best so far,
<run dir>/checkpoints/last.ckpt     and the latest one, which a killed run resumes from
<run dir>/adapter/                  the adapter (or the full model) of the best checkpoint
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESULTS = "results.json"
FAILED = "failed.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
ADAPTER = "adapter"
# What, when present, means that a directory already holds a run.
RUN_MARKERS = (RESULTS, CHECKPOINTS, ADAPTER)


def last_checkpoint(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints/last.ckpt``."""
    return Path(run_dir) / CHECKPOINTS / LAST_CHECKPOINT


def training_peak_mb(train: dict[str, Any]) -> float | None:
    """The peak memory of a results.json ``train`` record: the device's where the run used a GPU,
    else the host's; ``peak_memory_mb`` for records written before the two were told apart."""
    for key in ("peak_device_memory_mb", "peak_host_memory_mb", "peak_memory_mb"):
        if train.get(key) is not None:
            return float(train[key])
    return None
