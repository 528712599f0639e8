"""Optuna pruning from inside a trial's job: a Lightning callback that reports each held-out
evaluation to the trial and stops the fit when the study's pruner says so.

Optuna's own PyTorchLightningPruningCallback (optuna.integration, 2.x) is written for the
``pytorch_lightning`` package and a trial object in hand; the Hydra sweeper hands the job neither,
so this one opens the trial from the storage (glue_lora.search.study.open_trial).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from glue_lora.search.study import PRUNED_AT_STEP, open_trial

log = logging.getLogger(__name__)


class PruneTrial(L.Callback):
    """Report the held-out primary metric after every evaluation; stop hopeless trials.

    ``enabled=false`` (``hparams_search.prune=false``) reports nothing and prunes nothing. A stopped
    run ends as any run does (results.json, adapter); the sweeper then tells the trial PRUNED.
    The last evaluation is reported but never prunes, since stopping there saves nothing and only
    keeps the trial's score out of the study, unless ``prune_last_evaluation`` (the committed
    searches of ``experiment=method_search`` ran so).
    """

    def __init__(
        self,
        storage: str | None,
        study_name: str | None,
        trial: int | None,
        pruner: Any = None,
        enabled: bool = True,
        prune_last_evaluation: bool = False,
    ) -> None:
        self.enabled = bool(enabled and storage and study_name and trial is not None)
        self.prune_last_evaluation = prune_last_evaluation
        self.storage, self.study_name, self.number, self.pruner = storage, study_name, trial, pruner
        self._trial: Any = None

    def _open(self) -> Any:
        if self._trial is None:
            self._trial = open_trial(str(self.storage), str(self.study_name), int(self.number), self.pruner)
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking or not pl_module.history:
            return
        stop = False
        if trainer.is_global_zero:
            # The step is the evaluation's index, so that trials of any batch size or epoch length
            # compare at the same point (MedianPruner's n_warmup_steps counts evaluations).
            evaluation = len(pl_module.history) - 1
            entry = pl_module.history[-1]
            trial = self._open()
            trial.report(entry["dev"][pl_module.spec.primary_metric], step=evaluation)
            last = trainer.global_step >= trainer.estimated_stepping_batches
            if (self.prune_last_evaluation or not last) and trial.should_prune():
                trial.set_user_attr(PRUNED_AT_STEP, entry["step"])
                log.info(
                    "Trial %d pruned at step %d (evaluation %d): below the median of the earlier trials",
                    self.number,
                    entry["step"],
                    evaluation,
                )
                stop = True
        # Every rank stops together, as rank 0 decided.
        if trainer.strategy.broadcast(stop, src=0):
            trainer.should_stop = True
