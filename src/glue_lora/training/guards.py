"""Stops a run as soon as its training goes wrong, naming the step and what to change."""

from __future__ import annotations

import lightning as L
import torch

from glue_lora.utils.errors import TrainingError


class NonFiniteLossGuard(L.Callback):
    """Stop before the backward pass of a loss that is NaN or infinite.

    No optimizer step is taken with it, and no checkpoint is written after it: ``last.ckpt`` keeps
    the last good weights.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        # every rank must take the same decision, or the others wait forever in the next all-reduce
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        step = trainer.global_step
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        lr = f"{max(lrs):.3g}" if lrs else "unknown"
        raise TrainingError(
            f"The training loss is {loss.item()} at step {step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx}), learning rate {lr}. Training stopped; the "
            f"last checkpoint before it is kept in checkpoints/last.ckpt. Start a new run with a lower "
            f"optimizer.lr (e.g. half of {lr}), gradient clipping (trainer.gradient_clip_val=1.0), or "
            "check the data of that batch."
        )
