"""Files a run leaves behind, each written under a temporary name and renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from glue_lora.utils.diskspace import disk_full_error, is_disk_full, tensor_bytes
from glue_lora.utils.errors import DiskFullError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", size: Callable[[], int] | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary file is in the same directory (a rename across file systems is a copy, not
    atomic) and is synced to disk before the rename, so readers and a crash at any moment leave
    either the old file or the new one, never a mixture. A write that runs out of disk space raises
    ``DiskFullError`` naming ``path``, the free space and the size needed (``size()``, if given).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise disk_full_error(path, max(size() if size else 0, written), err) from err
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new one, never half."""
    with atomic_open(path, "w", size=lambda: len(json.dumps(data, indent=2)) + 1) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same directory."""
    import torch

    with atomic_open(path, "wb", size=lambda: tensor_bytes(obj)) as handle:
        torch.save(obj, handle)


def _saved_bytes(model: Any) -> int:
    """About what ``model.save_pretrained`` writes: the adapter of a peft model, else every weight."""
    try:
        if hasattr(model, "peft_config"):
            from peft import get_peft_model_state_dict

            return tensor_bytes(get_peft_model_state_dict(model))
        return tensor_bytes(model.state_dict())
    except Exception:  # only for the message; an object without weights has no estimate
        return 0


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def atomic_save_pretrained(
    model: Any,
    out_dir: str | Path,
    extra_json: dict[str, Any] | None = None,
    extra_text: dict[str, str] | None = None,
    save_kwargs: dict[str, Any] | None = None,
) -> Path:
    """``model.save_pretrained`` into a temporary sibling directory, then swap it into place.

    ``extra_json`` (file name -> content) and ``extra_text`` (file name -> text) are written into
    the directory before the swap, so the directory never appears without them. A crash between
    the two renames of the swap leaves the previous directory at ``.<name>.old``. ``save_kwargs``
    go to ``save_pretrained``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        model.save_pretrained(tmp, **(save_kwargs or {}))
        for name, content in (extra_json or {}).items():
            atomic_write_json(tmp / name, content)
        for name, text in (extra_text or {}).items():
            with atomic_open(tmp / name, size=lambda text=text: len(text.encode())) as handle:
                handle.write(text)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException as err:
        written = _dir_bytes(tmp) if tmp.exists() else 0
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise disk_full_error(out_dir, max(_saved_bytes(model), written), err) from err
        raise
    return out_dir


def dir_size_mb(path: Path) -> float | None:
    """Size in MiB of a file, or of every file under a directory; None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` while its summary is rewritten (jobs of a parallel sweep
    end at the same time)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic replacement alone
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".summary.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
