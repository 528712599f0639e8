"""Lightning callbacks of our own: training throughput, peak and optimizer-state memory for results.json.

Peak memory is read in ``on_train_end``, while the module is still on its device: after ``fit``
Lightning has moved it back to the CPU, where only the host's memory can be read. Each rank's
peak is all-reduced (max), so rank 0 records the largest device's and the largest process's.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from glue_lora.utils.memory import device_peak_mb, host_peak_mb, measured_optimizer_state_bytes


class ThroughputMeter(L.Callback):
    """Counts samples and real (non-padding) tokens, and the time spent training (not validating).

    Token counts accumulate on the device, so the hot path never waits for a host sync.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.tokens: torch.Tensor | None = None
        self.padded_tokens = 0
        self.train_seconds = 0.0
        self.fit_seconds = 0.0
        self._epoch_start = 0.0
        self._val_start = 0.0
        self._fit_start = 0.0
        self.optimizer = ""
        self.optimizer_state_bytes = 0
        self.peak_device_mb: float | None = None
        self.peak_host_mb: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._fit_start = time.perf_counter() - self.fit_seconds  # a resumed run goes on counting
        self._epoch_start = time.perf_counter()  # a run resumed mid-epoch gets no epoch start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        mask = batch["attention_mask"]
        self.samples += mask.shape[0]
        self.padded_tokens += mask.numel()
        count = mask.sum()
        self.tokens = count if self.tokens is None else self.tokens + count

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation inside a training epoch is not training time.
        if not trainer.sanity_checking:
            self._epoch_start += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_seconds += time.perf_counter() - self._epoch_start

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = device_peak_mb(pl_module.device)
        figures = torch.tensor(
            [-1.0 if device is None else device, host_peak_mb()], device=trainer.strategy.root_device
        )
        figures = trainer.strategy.reduce(figures, reduce_op="max")  # one collective, at the end
        device_mb, host_mb = figures.tolist()
        self.peak_device_mb = None if device_mb < 0 else device_mb
        self.peak_host_mb = host_mb

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_seconds = time.perf_counter() - self._fit_start
        self.optimizer = ",".join(type(o).__name__ for o in trainer.optimizers)
        self.optimizer_state_bytes = sum(measured_optimizer_state_bytes(o) for o in trainer.optimizers)

    def state_dict(self) -> dict[str, Any]:
        # Saved in checkpoints, so that a resumed run reports the whole run's throughput.
        now = time.perf_counter()
        in_epoch = now - self._epoch_start if self._epoch_start else 0.0
        return {
            "samples": self.samples,
            "tokens": int(self.tokens) if self.tokens is not None else 0,
            "padded_tokens": self.padded_tokens,
            "train_seconds": self.train_seconds + in_epoch,
            "fit_seconds": now - self._fit_start if self._fit_start else 0.0,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.samples = int(state_dict["samples"])
        self.tokens = torch.tensor(int(state_dict["tokens"]))
        self.padded_tokens = int(state_dict["padded_tokens"])
        self.train_seconds = float(state_dict["train_seconds"])
        self.fit_seconds = float(state_dict["fit_seconds"])

    def summary(self, device: torch.device | None = None) -> dict[str, float | str | None]:
        """The ``train`` record of results.json (``device``: where the module was, for a run that
        never reached ``on_train_end``)."""
        seconds = max(self.train_seconds, 1e-9)
        tokens = int(self.tokens) if self.tokens is not None else 0
        peak_device = self.peak_device_mb if self.peak_host_mb is not None else device_peak_mb(device)
        peak_host = self.peak_host_mb if self.peak_host_mb is not None else host_peak_mb()
        peak = peak_host if peak_device is None else peak_device
        return {
            "seconds": round(self.fit_seconds, 3),
            "train_seconds": round(self.train_seconds, 3),
            "samples_per_second": round(self.samples / seconds, 2),
            "tokens_per_second": round(tokens / seconds, 2),
            "padding_share": round(1 - tokens / self.padded_tokens, 4) if self.padded_tokens else 0.0,
            # the device's peak on a GPU, else the host's (the key older readers know)
            "peak_memory_mb": round(peak, 1),
            "peak_device_memory_mb": None if peak_device is None else round(peak_device, 1),
            "peak_host_memory_mb": round(peak_host, 1),
            "optimizer": self.optimizer,
            "optimizer_state_mb": round(self.optimizer_state_bytes / 2**20, 3),
        }
