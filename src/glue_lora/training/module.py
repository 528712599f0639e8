"""The LightningModule: loss, dev metrics, trainable-only optimizer and checkpoints, LR schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from glue_lora.data.collate import model_inputs
from glue_lora.data.tasks import TaskSpec
from glue_lora.settings.lora import LoraSettings
from glue_lora.settings.method import LORA, MethodSettings
from glue_lora.training.metrics import build_metrics, predictions_from_logits
from glue_lora.training.optimizers import build_optimizer
from glue_lora.training.regularizers import TrainingLoss

# Log prefix per dev split; MNLI's mismatched dev is logged as val_mm/<metric>.
SPLIT_PREFIX = {"dev": "val", "dev_mm": "val_mm"}
# Key in results.json / history for each dev split.
SPLIT_RESULT_KEY = {"dev": "dev", "dev_mm": "dev_mismatched"}


class GlueLoRAModule(L.LightningModule):
    """Trains ``model`` (a peft-wrapped or plain sequence classifier) on one task.

    ``optimizer`` is the ``optimizer=`` group (a partial optimizer class); ``method`` and ``lora``
    say whether it is used over our param groups or a method builds its own (LoRA+, LoRA-FA: see
    ``training/optimizers.py``).
    """

    def __init__(
        self,
        model: nn.Module,
        spec: TaskSpec,
        optimizer: Any,
        schedule: Mapping[str, Any],
        lr_tiers: Mapping[str, Any] | None = None,
        training_loss: TrainingLoss | None = None,
        method: MethodSettings = LORA,
        lora: LoraSettings | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.optimizer_factory = optimizer
        self.schedule = dict(schedule)
        self.lr_tiers = lr_tiers
        self.method = method
        self.lora = lora
        self.training_loss = training_loss or TrainingLoss(regression=spec.is_regression)
        self.val_metrics = nn.ModuleList(build_metrics(spec) for _ in spec.eval_splits)
        self.history: list[dict[str, Any]] = []
        # Checkpoints hold only trained weights, so loading them must not require the frozen ones.
        self.strict_loading = False

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Any:
        return self.model(**model_inputs(batch))

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.training_loss(self, self.model.get_input_embeddings(), batch)
        loss = terms.pop("loss")
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        for name, value in terms.items():  # R-Drop / Cutoff terms
            self.log(f"train/{name}", value, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(
        self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        output = self(batch)
        split = self.spec.eval_splits[dataloader_idx]
        self.log(
            f"{SPLIT_PREFIX[split]}/loss",
            output.loss,
            batch_size=batch["input_ids"].shape[0],
            add_dataloader_idx=False,
            sync_dist=True,  # each rank's mean over its batches, averaged over the ranks once per epoch
        )
        preds = predictions_from_logits(self.spec, output.logits)
        self.val_metrics[dataloader_idx].update(preds, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        entry: dict[str, Any] = {"epoch": self.current_epoch, "step": self.global_step}
        for split, metrics in zip(self.spec.eval_splits, self.val_metrics, strict=True):
            values = {name: float(v) for name, v in metrics.compute().items()}
            metrics.reset()
            for name, value in values.items():
                # torchmetrics' compute() has gathered every rank's predictions, so the value is the
                # same on all ranks; sync_dist averages those equal values (and tells Lightning so).
                self.log(
                    f"{SPLIT_PREFIX[split]}/{name}",
                    value,
                    prog_bar=split == "dev",
                    add_dataloader_idx=False,
                    sync_dist=True,
                )
            entry[SPLIT_RESULT_KEY[split]] = values
        if not self.trainer.sanity_checking:
            self.history.append(entry)

    def predict_step(
        self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Row ids and fp32 logits (and labels, when the split has them) for eval.py's predictions."""
        out = {"idx": batch["idx"], "logits": self(batch).logits.float()}
        if "labels" in batch:
            out["labels"] = batch["labels"]
        return out

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.optimizer_factory, self.method, self.lora, self.lr_tiers)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = build_schedule(optimizer, self.schedule, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def checkpointed_names(self) -> set[str]:
        """The state-dict keys a checkpoint keeps: the trained weights, and LoRA-FA's frozen A, which
        is part of the adapter (a resumed run must not depend on drawing the same A again)."""
        keep = {f"model.{n}" for n, _ in self.trainable_named_parameters()}
        if self.method.optimizer == "lora_fa":
            keep |= {f"model.{n}" for n, _ in self.model.named_parameters() if ".lora_A." in n}
        return keep

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = self.checkpointed_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("history", []))


def warmup_steps(schedule: Mapping[str, Any], total_steps: int) -> int:
    """Warm-up length: ``warmup_steps`` if set, else ``warmup_ratio`` of the total, rounded up as
    the reference's Trainer does (``math.ceil(num_training_steps * warmup_ratio)``)."""
    if schedule.get("warmup_steps"):
        return int(schedule["warmup_steps"])
    return math.ceil(total_steps * float(schedule.get("warmup_ratio") or 0.0))


def build_schedule(
    optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up, then the decay named by ``schedule.name`` (linear, cosine or constant)."""
    from transformers import get_scheduler

    name = schedule.get("name", "linear")
    kind = {"constant": "constant_with_warmup"}.get(name, name)
    return get_scheduler(
        kind,
        optimizer,
        num_warmup_steps=warmup_steps(schedule, total_steps),
        num_training_steps=total_steps,
    )
