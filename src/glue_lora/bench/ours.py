"""The benchmark's 'ours' setting: ``glue_lora.train.run`` on the composed config, as train.py runs it.

Nothing is stripped: the run builds the model, the data module, the Lightning trainer with its
checkpoints, loggers and callbacks, and writes results.json and adapter/. The only addition is
:class:`BenchCallback`, put into ``cfg.callbacks`` like any user callback, which times the steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import open_dict

from glue_lora.adapters.record import ADAPTER_WEIGHTS
from glue_lora.bench.common import (
    Job,
    StepClock,
    compose_config,
    optimizer_state_mb,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
)
from glue_lora.utils.artifacts import dir_size_mb
from glue_lora.utils.run_files import ADAPTER, last_checkpoint


class BenchCallback(L.Callback):
    """Times optimizer steps with a :class:`StepClock`; with ``target``, stops once dev reaches it."""

    def __init__(self, out_file: str, warmup: int, monitor: str, target: float | None = None) -> None:
        self.out_file = Path(out_file)
        self.warmup = warmup
        self.monitor = monitor
        self.target = target
        self.clock: StepClock | None = None
        self.figures: dict[str, Any] = {"evals": []}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        cuda = pl_module.device.type == "cuda"
        reset_peak_memory(cuda)
        self.clock = StepClock(self.warmup, cuda)
        self.clock.begin()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.clock.batch(batch["attention_mask"])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.clock.step_end(trainer.global_step)
        if trainer.global_step == trainer.max_steps:
            self.clock.finish()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.clock is not None and trainer.state.fn == TrainerFn.FITTING:
            self.clock.pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.clock is None or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        score = float(trainer.callback_metrics[self.monitor])
        self.figures["evals"].append(self.clock.eval_point(trainer.global_step, score))
        self.clock.resume()
        if self.target is not None and score >= self.target and "reached" not in self.figures:
            self.figures["reached"] = self.figures["evals"][-1]
            self.clock.finish()
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.clock.end is None:
            self.clock.finish()
        self.figures["peak_memory_mb"] = peak_memory_mb(self.clock.cuda)
        self.figures["optimizer_state_mb"] = optimizer_state_mb(trainer.optimizers[0])
        if self.target is None:
            self.figures.update(self.clock.summary())
        self.out_file.write_text(json.dumps(self.figures))


def run_ours(job: Job) -> dict[str, Any]:
    from glue_lora.data.tasks import get_task
    from glue_lora.train import run

    device = resolve_device(job.device)
    cfg = compose_config(job, device)
    spec = get_task(cfg.task.name)
    figures_file = Path(job.run_dir) / "bench_clock.json"
    with open_dict(cfg):
        if cfg.get("callbacks") is None:
            cfg.callbacks = {}
        cfg.callbacks.bench = {
            "_target_": f"{__name__}.BenchCallback",
            "out_file": str(figures_file),
            "warmup": job.warmup,
            "monitor": f"val/{spec.primary_metric}",
            "target": job.target,
        }
    results = run(cfg)
    figures = json.loads(figures_file.read_text())
    run_dir = Path(job.run_dir)
    figures["dev_score"] = results["score"]
    figures["checkpoint_mb"] = dir_size_mb(last_checkpoint(run_dir))
    figures["adapter_mb"] = dir_size_mb(run_dir / ADAPTER / ADAPTER_WEIGHTS)
    return figures
