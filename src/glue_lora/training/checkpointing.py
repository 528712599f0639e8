"""Lightning checkpoints: written atomically, read safely, and which ones a run keeps.

Lightning's own TorchCheckpointIO writes through a temporary file in the system temp directory
and moves it into place; when that is another file system (a tmpfs /tmp on a cluster node) the move
is a copy that a crash can leave half-written. ``SafeCheckpointIO`` writes beside the target and
renames, and reads only tensors and plain containers.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from glue_lora.utils.artifacts import atomic_torch_save
from glue_lora.utils.errors import CheckpointError


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: a file that would run code when unpickled is refused."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Check the path (ckpt_path=...).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"Refused to load {path}: it holds Python objects other than tensors and plain "
            f"containers ({first_line}), and unpickling it could run arbitrary code. Use only "
            "checkpoints written by glue-lora's train.py; re-train rather than load a file of unknown origin."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(
            f"Could not read checkpoint {path} ({type(err).__name__}: {err}); the file is damaged or "
            "not a PyTorch checkpoint. Resume from another checkpoint or start a new run."
        ) from err


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with an atomic same-directory write and a weights-only read."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(path, map_location=map_location or "cpu")


def checkpoint_callbacks(
    ckpt_dir: Path, monitor: str, every_n_train_steps: int | None
) -> tuple[ModelCheckpoint, list[ModelCheckpoint]]:
    """The callback keeping ``best.ckpt`` (and ``last.ckpt`` at each validation), and all of them.

    With ``every_n_train_steps``, a second one refreshes ``last.ckpt`` every that many steps, so a
    killed run loses at most that many steps.
    """
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=monitor,
        mode="max",
        save_top_k=1,
        save_last=True,
        save_weights_only=False,
        enable_version_counter=False,  # fixed names: best.ckpt, last.ckpt (both callbacks write last)
        # Ranked after each validation only: at the end of an epoch that no validation closed (a
        # max_steps run inside its first epoch) there is no score to rank, and Lightning warned
        # that the monitored key was missing.
        save_on_train_epoch_end=False,
    )
    callbacks = [best]
    if every_n_train_steps:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                save_top_k=0,
                save_last=True,
                every_n_train_steps=every_n_train_steps,
                enable_version_counter=False,
            )
        )
    return best, callbacks
