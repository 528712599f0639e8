"""Stops a run as soon as its training goes wrong, naming the step and what to change."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from glue_lora.utils.errors import TrainingError


class NonFiniteLossGuard(L.Callback):
    """Stop a run whose training loss became NaN or infinite, before anything is written after it.

    Looking at each loss on the host would stall the GPU every micro-batch (and cost a collective
    under DDP), so the losses are only kept, as the device tensors they are, and looked at in one
    go at the boundaries where the run would write or report: every ``trainer.log_every_n_steps``
    optimizer steps (when Lightning syncs to log the loss anyway), before each validation, before
    each checkpoint of any callback (``on_save_checkpoint``), and at the end of training. The check
    all-reduces the losses' flags, so every rank takes the same decision at the same point. No
    checkpoint, validation, adapter or results.json is written after a non-finite loss:
    ``last.ckpt`` keeps the last good weights. The optimizer steps taken in memory between the loss
    and the check (at most ``log_every_n_steps``) are discarded with the run.

    ``check_every_n_steps`` (``nonfinite_loss_check_every_n_steps``) looks more often; 1 looks before
    every optimizer step, so that no step is ever taken after a non-finite loss, at the price of one
    host sync and all-reduce per step.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._losses: list[torch.Tensor] = []
        # where each kept loss was: (optimizer step, epoch, batch index, largest learning rate)
        self._places: list[tuple[int, int, int, float | None]] = []
        self._checked_at_step = 0  # step 0: nothing to look at yet

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        self._losses.append(loss.detach())
        lr = max((group["lr"] for opt in trainer.optimizers for group in opt.param_groups), default=None)
        self._places.append(
            (trainer.global_step, trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx, lr)
        )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.check_every_n_steps == 1:
            self.check(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        every = self.check_every_n_steps or trainer.log_every_n_steps
        if step != self._checked_at_step and step % max(every, 1) == 0:
            self._checked_at_step = step
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.check(trainer)  # called before the checkpoint is written, on every rank

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Raise ``TrainingError`` if a loss kept since the last check is not finite, on any rank."""
        if not self._losses:
            return
        losses = torch.stack(self._losses)
        bad = (~torch.isfinite(losses)).float()
        # every rank must take the same decision, or the others wait forever in the next all-reduce
        bad = trainer.strategy.reduce(bad.to(trainer.strategy.root_device), reduce_op="max")
        flags = bad.tolist()  # the one host sync of the check
        losses_here, places = self._losses, self._places
        self._losses, self._places = [], []
        if not any(flags):
            return
        first = flags.index(1.0)
        value = losses_here[first].item()
        step, epoch, batch, lr = places[first]
        shown = "unknown" if lr is None else f"{lr:.3g}"
        loss = str(value) if not torch.isfinite(torch.tensor(value)) else "not finite on another rank"
        raise TrainingError(
            f"The training loss is {loss} at step {step} (epoch {epoch}, batch {batch}), learning "
            f"rate {shown}. Training stopped at step {trainer.global_step}, before anything was written "
            "after that loss; the last checkpoint before it is kept in checkpoints/last.ckpt. Start a "
            f"new run with a lower optimizer.lr (e.g. half of {shown}), gradient clipping "
            "(trainer.gradient_clip_val=1.0), or check the data of that batch."
        )
