"""What produced a result: the code's commit, the command, the library versions, the hardware, the time.

Recorded in every ``results.json`` and ``eval_results.json`` under ``provenance`` so that a reader of
a number can tell which code, libraries and machine gave it. Each fact that cannot be found (no git
binary, code outside a repository, no GPU) is ``null``; finding them never fails a run.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from glue_lora.utils.redact import REDACTED, is_secret_key

# The distributions whose versions a result depends on (pip names).
LIBRARIES = ("torch", "lightning", "transformers", "peft", "datasets", "hydra-core", "torchmetrics")
GIT_TIMEOUT_S = 2.0  # `git status` of a huge or network-mounted tree must not hold a run up


def git_state(source: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha | None, "dirty": bool | None}`` of the repository holding ``source`` (this code)."""
    unknown: dict[str, Any] = {"commit": None, "dirty": None}
    source = source or Path(__file__).resolve().parent
    root = next((p for p in (source, *source.parents) if (p / ".git").exists()), None)
    git = shutil.which("git")
    if root is None or git is None:
        return unknown

    def ask(*args: str) -> str | None:
        try:
            done = subprocess.run(
                [git, "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = ask("rev-parse", "HEAD")
    if commit is None:
        return unknown
    # Tracked files only: the run's own outputs (outputs/, multirun/) are untracked and not code.
    status = ask("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def command_line(argv: Sequence[str] | None = None) -> list[str]:
    """The command that started this process, the values of secret overrides masked."""
    argv = list(sys.argv if argv is None else argv)
    masked = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        secret = sep and value and not value.startswith("${") and is_secret_key(key.lstrip("+~"))
        masked.append(f"{key}={REDACTED}" if secret else arg)
    if masked:
        masked[0] = Path(masked[0]).name  # the script, not where it lies on this machine
    return [Path(sys.executable).name, *masked]


def library_versions() -> dict[str, str | None]:
    """Python's version and each of ``LIBRARIES``' (None where not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_facts(cuda: Any, cuda_version: str | None, cudnn_version: int | None) -> dict[str, Any]:
    """The GPUs ``cuda`` (``torch.cuda``) sees: count, names and memory; CUDA and cuDNN versions."""
    count = cuda.device_count() if cuda.is_available() else 0
    gpus = []
    for i in range(count):
        props = cuda.get_device_properties(i)
        gpus.append({"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    return {
        "gpu_count": count,
        "gpus": gpus,
        "cuda": cuda_version if count else None,
        "cudnn": cudnn_version if count else None,
    }


def hardware() -> dict[str, Any]:
    """This machine's CPU and GPUs, and the threads torch computes with on the CPU (OMP_NUM_THREADS
    or the cores), which change a CPU run's speed and can change its last digits."""
    facts: dict[str, Any] = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        facts["torch_threads"] = torch.get_num_threads()
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        facts.update(gpu_facts(torch.cuda, torch.version.cuda, cudnn))
    except Exception:  # a broken CUDA install must not cost the run its results
        facts.update({"gpu_count": None, "gpus": None, "cuda": None, "cudnn": None})
    return facts


def run_provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything above, with the start time (UTC, ISO 8601); call it when the run starts."""
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "command": command_line(argv),
        "versions": library_versions(),
        "hardware": hardware(),
    }
