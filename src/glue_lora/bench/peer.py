"""The benchmark's peer: transformers ``Trainer`` + peft ``get_peft_model``, as ``run_glue.py`` runs them.

Two settings: ``peer_default`` pads every example to ``max_length`` and batches in random order
(``run_glue.py``'s defaults: ``pad_to_max_length=True``, ``default_data_collator``); ``peer_best``
pads dynamically with ``DataCollatorWithPadding`` and groups batches by length. Both get the rows,
model, LoRA config, optimizer, schedule, batch size and step count of the composed config that
'ours' runs; only the training stack differs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import datasets
import torch
from omegaconf import OmegaConf
from transformers import (
    AutoModelForSequenceClassification,
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
    dir_size_mb,
    optimizer_state_mb,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
)
from glue_lora.data.datamodule import datamodule_from_settings
from glue_lora.data.reading import Rows
from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.model.backbone import build_config, build_tokenizer, resolve_source
from glue_lora.model.lora import lora_peft_config
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import lora_dict
from glue_lora.training.metrics import build_metrics, predictions_from_logits
from glue_lora.training.module import warmup_steps

# Our schedule names -> transformers' lr_scheduler_type.
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


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


def _dataset(rows: Rows, tokenizer: Any, max_length: int, padding: bool | str) -> datasets.Dataset:
    """Tokenize as run_glue.py does: ``tokenizer(*texts, padding, max_length, truncation=True)``."""
    table = {f"text_{i}": list(col) for i, col in enumerate(zip(*rows["texts"], strict=True))}
    table["label"] = rows["label"]
    text_keys = [k for k in table if k.startswith("text_")]

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(
            *(batch[k] for k in text_keys), padding=padding, max_length=max_length, truncation=True
        )

    return datasets.Dataset.from_dict(table).map(preprocess, batched=True, remove_columns=text_keys)


def _compute_metrics(spec: TaskSpec):
    metrics = build_metrics(spec)

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        preds = predictions_from_logits(spec, torch.as_tensor(logits))
        values = metrics(preds, torch.as_tensor(labels))
        metrics.reset()
        return {name: float(v) for name, v in values.items()}

    return compute


def _training_arguments(job: Job, cfg: Any, device: str, best: bool) -> TrainingArguments:
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    optimizer = cfg.optimizer
    betas = list(optimizer.get("betas", [0.9, 0.999]))
    precision = str(cfg.trainer.precision)
    kwargs: dict[str, Any] = {
        "output_dir": str(job.run_dir),
        "per_device_train_batch_size": cfg.data.batch_size,
        "per_device_eval_batch_size": cfg.data.eval_batch_size,
        "learning_rate": optimizer.lr,
        "weight_decay": optimizer.get("weight_decay", 0.0),
        "adam_beta1": betas[0],
        "adam_beta2": betas[1],
        "adam_epsilon": optimizer.get("eps", 1e-8),
        "lr_scheduler_type": SCHEDULES[cfg.schedule.get("name", "linear")],
        "warmup_steps": warmup_steps(cfg.schedule, job.steps),
        "max_steps": job.steps,
        "max_grad_norm": cfg.trainer.get("gradient_clip_val") or 0.0,
        "seed": cfg.seed,
        "dataloader_num_workers": cfg.data.num_workers,
        "report_to": "none",
        "use_cpu": device == "cpu",
        "bf16": device == "cuda" and precision.startswith("bf16"),
        "fp16": device == "cuda" and precision.startswith("16"),
    }
    if job.time_to_accuracy:
        kwargs.update(eval_strategy="steps", eval_steps=job.eval_every, save_strategy="no")
    else:
        # One resumable checkpoint at the last step, to compare its size with ours.
        kwargs.update(save_strategy="steps", save_steps=job.steps)
    if best:
        # The option was renamed in transformers 5 (train_sampling_strategy="group_by_length").
        if "train_sampling_strategy" in fields:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    return TrainingArguments(**kwargs)


def run_peer(job: Job, best: bool) -> dict[str, Any]:
    device = resolve_device(job.device)
    cfg = compose_config(job, device)
    spec = get_task(cfg.task.name)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    set_seed(cfg.seed)

    config = build_config(model_cfg, spec.num_labels, spec.is_regression)
    if model_cfg.get("pretrained", True):
        # fp32 weights, as ours loads them (transformers 5 would otherwise keep the stored dtype).
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_source(model_cfg), config=config, dtype=torch.float32
        )
    else:
        model = AutoModelForSequenceClassification.from_config(config)
    tokenizer = build_tokenizer(model_cfg, config)
    lora = lora_dict(cfg)
    if lora is not None:
        model = get_peft_model_for(model, lora, model_cfg["trained_in_full"])

    # The same rows as ours: read (not tokenized) by the same reader, subset and dev carving.
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    rows = datamodule_from_settings(data, spec, tokenizer).read_all()
    padding: bool | str = False if best else "max_length"
    train = _dataset(rows["train"], tokenizer, cfg.data.max_length, padding)
    dev = _dataset(rows["dev"], tokenizer, cfg.data.max_length, padding)

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
        compute_metrics=_compute_metrics(spec),
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


def get_peft_model_for(model: Any, lora: dict[str, Any], trained_in_full: list[str]) -> Any:
    """``get_peft_model`` with the LoraConfig that ours maps from the same ``lora`` group."""
    from peft import get_peft_model

    return get_peft_model(model, lora_peft_config(lora, lora["targets"], trained_in_full))
