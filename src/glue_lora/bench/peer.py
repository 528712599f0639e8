"""The benchmark's peer: transformers ``Trainer`` + peft ``get_peft_model``, as ``run_glue.py`` runs them.

Two settings: ``peer_default`` pads every example to ``max_length`` and batches in random order
(``run_glue.py``'s defaults: ``pad_to_max_length=True``, ``default_data_collator``); ``peer_best``
pads dynamically with ``DataCollatorWithPadding`` and groups batches by length. Both get the rows,
model, LoRA config, optimizer, schedule, batch size and step count of the composed config that
'ours' runs; only the training stack differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from transformers import (
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from glue_lora.bench.common import (
    Job,
    StepClock,
    compose_config,
    optimizer_state_mb,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
)
from glue_lora.bench.peer_stack import peer_dataset, peer_metrics, peer_model, peer_training_arguments
from glue_lora.data.datamodule import datamodule_from_settings
from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import lora_dict
from glue_lora.training.module import warmup_steps
from glue_lora.utils.artifacts import dir_size_mb


class CountingCollator:
    """Wraps the peer's collator to hand every batch's attention mask to the clock, in order."""

    def __init__(self, collate: Any, clock: StepClock) -> None:
        self.collate = collate
        self.clock = clock

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        if self.clock.running:  # evaluation batches go through the same collator
            self.clock.batch(batch["attention_mask"])
        return batch


class ClockCallback(TrainerCallback):
    """The peer's side of :class:`StepClock`; with a target, stops once dev reaches it."""

    def __init__(self, clock: StepClock, spec: TaskSpec, target: float | None, eval_every: int) -> None:
        self.clock = clock
        self.metric = f"eval_{spec.primary_metric}"
        self.target = target
        self.eval_every = eval_every
        self.figures: dict[str, Any] = {"evals": []}

    def on_train_begin(self, args, state, control, **kwargs):
        reset_peak_memory(self.clock.cuda)
        self.clock.begin()

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.step_end(state.global_step)
        if state.global_step == state.max_steps:
            self.clock.finish()
        if self.target is not None and state.global_step % self.eval_every == 0:
            self.clock.pause()  # evaluation follows this hook

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.target is None or self.clock.end is not None:
            return
        score = float(metrics[self.metric])
        self.figures["evals"].append(self.clock.eval_point(state.global_step, score))
        self.clock.resume()
        if score >= self.target:
            self.figures["reached"] = self.figures["evals"][-1]
            self.clock.finish()
            control.should_training_stop = True

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        if self.clock.end is None:
            self.clock.finish()
        self.figures["peak_memory_mb"] = peak_memory_mb(self.clock.cuda)
        self.figures["optimizer_state_mb"] = optimizer_state_mb(optimizer)
        if self.target is None:
            self.figures.update(self.clock.summary())


def _training_arguments(job: Job, cfg: Any, device: str, best: bool) -> TrainingArguments:
    if job.time_to_accuracy:
        saving = {"eval_strategy": "steps", "eval_steps": job.eval_every, "save_strategy": "no"}
    else:
        # One resumable checkpoint at the last step, to compare its size with ours.
        saving = {"save_strategy": "steps", "save_steps": job.steps}
    return peer_training_arguments(
        cfg,
        output_dir=job.run_dir,
        device=device,
        max_steps=job.steps,
        warmup=warmup_steps(cfg.schedule, job.steps),
        group_by_length=best,
        **saving,
    )


def run_peer(job: Job, best: bool) -> dict[str, Any]:
    device = resolve_device(job.device)
    cfg = compose_config(job, device)
    spec = get_task(cfg.task.name)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    set_seed(cfg.seed)

    model, tokenizer = peer_model(model_cfg, spec, lora_dict(cfg))

    # The same rows as ours: read (not tokenized) by the same reader, subset and dev carving.
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    rows = datamodule_from_settings(data, spec, tokenizer).read_all()
    padding: bool | str = False if best else "max_length"
    train = peer_dataset(rows["train"], tokenizer, cfg.data.max_length, padding)
    dev = peer_dataset(rows["dev"], tokenizer, cfg.data.max_length, padding)

    clock = StepClock(job.warmup, cuda=device == "cuda")
    collate = DataCollatorWithPadding(tokenizer) if best else default_data_collator
    callback = ClockCallback(clock, spec, job.target, job.eval_every)
    trainer = Trainer(
        model=model,
        args=_training_arguments(job, cfg, device, best),
        train_dataset=train,
        eval_dataset=dev,
        processing_class=tokenizer,
        data_collator=CountingCollator(collate, clock),
        compute_metrics=peer_metrics(spec),
        callbacks=[callback],
    )
    trainer.train()
    figures = callback.figures
    if not job.time_to_accuracy:
        figures["dev_score"] = trainer.evaluate()[f"eval_{spec.primary_metric}"]
        checkpoint = Path(job.run_dir) / f"checkpoint-{job.steps}"
        figures["checkpoint_mb"] = dir_size_mb(checkpoint)
        figures["adapter_mb"] = dir_size_mb(checkpoint / "adapter_model.safetensors")
    return figures
