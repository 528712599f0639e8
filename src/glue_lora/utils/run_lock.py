"""One run at a time in a run directory: a lock file the running run holds until it exits.

The lock is an ``flock`` on ``<run dir>/.run.lock``: the kernel drops it when its process ends,
however it ends, so a killed run leaves no lock that blocks the next one; the file it leaves
behind only names who held it, and the next run takes it over and says so. A lock file held on
another machine (a shared file system) is honoured as long as that machine's kernel holds it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from glue_lora.utils.errors import RunDirError

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    return f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


class RunDirLock:
    """The lock of one run directory, held from ``acquire`` until ``release`` or the process's exit."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock; a run directory whose lock a running run holds is refused (``RunDirError``)."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): runs are not guarded against each other there
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirError(
                    f"The run directory {self.path.parent} is in use: a run is writing into it now "
                    f"({_describe(_holder(self.path))}); it is left untouched. Wait for that run to end, or "
                    "choose another hydra.run.dir (or leave it at its default, which is new for every run)."
                ) from None
            # A releasing run unlinks the file before closing it: a lock on that old file is no lock.
            if os.path.exists(self.path) and os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                break
            os.close(fd)
        if previous := _holder(self.path):
            where = self.path.parent
            log.info("Took over the lock of %s in %s, which no longer runs.", _describe(previous), where)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        atexit.register(self.release)

    def release(self) -> None:
        """Give the lock up and remove its file (idempotent)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        atexit.unregister(self.release)
