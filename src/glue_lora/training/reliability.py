"""Callbacks that make a run survive a kill: exact resumption, a checkpoint on SIGTERM, and a stop
on a non-finite loss.

``RunState`` records in every checkpoint what Lightning leaves out (the random generators, the
place of the training loader inside the epoch, the run's config); ``SaveOnSigterm`` saves
``last.ckpt`` when a scheduler asks the job to stop.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from glue_lora.data.datamodule import ResumableDataLoader
from glue_lora.training.resume import CHECKPOINT_KEY
from glue_lora.utils.run_files import last_checkpoint

log = logging.getLogger(__name__)


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # as a tensor: torch.load(weights_only=True) refuses numpy arrays
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RunState(L.Callback):
    """Records in every checkpoint what Lightning leaves out but an exact resume needs.

    - the random generators' states (dropout draws from them), restored on resume;
    - the place in the epoch of the training loader (``data.datamodule.ResumableDataLoader``). Lightning has
      a mechanism for this, but it sets the loader up to estimate the number of steps before it
      loads the checkpoint and then never hands the loader its state; this callback does;
    - the run's resolved config (``checkpoint["glue_lora"]["config"]``), compared on resume.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._loader_state: dict[str, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            _set_rng_states(state_dict["rng"])

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        record: dict[str, Any] = {"config": self.config}
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableDataLoader):
            record["train_loader"] = loader.state_dict()
        checkpoint[CHECKPOINT_KEY] = record

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._loader_state = checkpoint.get(CHECKPOINT_KEY, {}).get("train_loader")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if self._loader_state is not None and isinstance(loader, ResumableDataLoader):
            loader.load_state_dict(self._loader_state)  # before its first batch is drawn
        self._loader_state = None


class SaveOnSigterm(L.Callback):
    """On SIGTERM (what SLURM and most schedulers send before a kill) save ``last.ckpt``, then stop.

    Lightning notices the signal after the current batch and stops with ``SIGTERMException``; this
    saves the finished steps, so a resumed run repeats none of them.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if not trainer.training or trainer.sanity_checking:
            log.warning("SIGTERM during validation: keeping the previous checkpoint %s.", self.path)
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        if trainer.is_global_zero:
            print(
                f"SIGTERM: saved {self.path} at step {trainer.global_step}; continue with resume=true "
                f"hydra.run.dir={self.path.parent.parent}",
                flush=True,
            )


def reliability_callbacks(
    config: dict[str, Any], out_dir: Path, nonfinite_check_every_n_steps: int | None = None
) -> list[L.Callback]:
    """The callbacks for exact resumption (``config``: the run's, as ``run_config`` gives it), a
    checkpoint on SIGTERM and a stop on a non-finite loss (looked for every
    ``nonfinite_check_every_n_steps`` optimizer steps; None: at each logging step)."""
    from glue_lora.training.guards import NonFiniteLossGuard

    guard = NonFiniteLossGuard(nonfinite_check_every_n_steps)
    return [RunState(config), SaveOnSigterm(last_checkpoint(out_dir)), guard]
