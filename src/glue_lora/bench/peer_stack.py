"""The peer training stack, transformers ``Trainer`` + peft ``get_peft_model``, built from our config:
the model, the tokenized rows, the metrics and the ``TrainingArguments`` that the benchmark's peer
(``bench/peer.py``) and ``stack=peer`` runs (``bench/peer_train.py``) share."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModelForSequenceClassification, TrainingArguments

from glue_lora.data.reading import Rows
from glue_lora.data.tasks import TaskSpec
from glue_lora.model.backbone import build_config, build_tokenizer, resolve_source
from glue_lora.model.lora import lora_peft_config
from glue_lora.training.metrics import build_metrics, predictions_from_logits

# Our schedule names -> transformers' lr_scheduler_type.
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def peer_model(model_cfg: dict[str, Any], spec: TaskSpec, lora: dict[str, Any] | None) -> tuple[Any, Any]:
    """The model (wrapped by ``get_peft_model`` unless ``lora`` is None) and its tokenizer."""
    config = build_config(model_cfg, spec.num_labels, spec.is_regression)
    if model_cfg.get("pretrained", True):
        # fp32 weights, as ours loads them (transformers 5 would otherwise keep the stored dtype).
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_source(model_cfg), config=config, dtype=torch.float32
        )
    else:
        model = AutoModelForSequenceClassification.from_config(config)
    tokenizer = build_tokenizer(model_cfg, config)
    if lora is not None:
        model = get_peft_model_for(model, lora, model_cfg["trained_in_full"])
    return model, tokenizer


def get_peft_model_for(model: Any, lora: dict[str, Any], trained_in_full: list[str]) -> Any:
    """``get_peft_model`` with the LoraConfig that ours maps from the same ``lora`` group."""
    from peft import get_peft_model

    return get_peft_model(model, lora_peft_config(lora, lora["targets"], trained_in_full))


def peer_dataset(rows: Rows, tokenizer: Any, max_length: int, padding: bool | str) -> datasets.Dataset:
    """Tokenize as run_glue.py does: ``tokenizer(*texts, padding, max_length, truncation=True)``."""
    table = {f"text_{i}": list(col) for i, col in enumerate(zip(*rows["texts"], strict=True))}
    table["label"] = rows["label"]
    text_keys = [k for k in table if k.startswith("text_")]

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(
            *(batch[k] for k in text_keys), padding=padding, max_length=max_length, truncation=True
        )

    return datasets.Dataset.from_dict(table).map(preprocess, batched=True, remove_columns=text_keys)


def peer_metrics(spec: TaskSpec):
    """``compute_metrics`` for the Trainer, scoring with our metrics (GLUE's scorer's functions)."""
    metrics = build_metrics(spec)

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        preds = predictions_from_logits(spec, torch.as_tensor(logits))
        values = metrics(preds, torch.as_tensor(labels))
        metrics.reset()
        return {name: float(v) for name, v in values.items()}

    return compute


def peer_training_arguments(
    cfg: Any,
    *,
    output_dir: str | Path,
    device: str,
    max_steps: int,
    warmup: int,
    group_by_length: bool,
    devices: int = 1,
    **extra: Any,
) -> TrainingArguments:
    """The ``TrainingArguments`` of our config's optimizer, schedule, batch, clipping and precision,
    on ``devices`` GPUs as our run (see ``use_devices``); ``extra`` adds or replaces arguments
    (evaluation and saving strategies, accumulation)."""
    optimizer = cfg.optimizer
    betas = list(optimizer.get("betas", [0.9, 0.999]))
    precision = str(cfg.trainer.precision)
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": cfg.data.batch_size,
        "per_device_eval_batch_size": cfg.data.eval_batch_size,
        "learning_rate": optimizer.lr,
        "weight_decay": optimizer.get("weight_decay", 0.0),
        "adam_beta1": betas[0],
        "adam_beta2": betas[1],
        "adam_epsilon": optimizer.get("eps", 1e-8),
        "lr_scheduler_type": SCHEDULES[cfg.schedule.get("name", "linear")],
        "warmup_steps": warmup,
        "max_steps": max_steps,
        "max_grad_norm": cfg.trainer.get("gradient_clip_val") or 0.0,
        "seed": cfg.seed,
        "dataloader_num_workers": cfg.data.num_workers,
        "report_to": "none",
        "use_cpu": device == "cpu",
        "bf16": device == "cuda" and precision.startswith("bf16"),
        "fp16": device == "cuda" and precision.startswith("16"),
    }
    if group_by_length:
        # The option was renamed in transformers 5 (train_sampling_strategy="group_by_length").
        if "train_sampling_strategy" in {f.name for f in dataclasses.fields(TrainingArguments)}:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    kwargs.update(extra)
    return use_devices(TrainingArguments(**kwargs), devices)


def use_devices(args: TrainingArguments, devices: int) -> TrainingArguments:
    """At most ``devices`` GPUs for ``Trainer``. Started without a launcher, it wraps the model in
    ``DataParallel`` over every visible GPU (``n_gpu = torch.cuda.device_count()``), which multiplies
    the batch by their number; transformers caps ``_n_gpu`` the same way for model parallelism."""
    if args.n_gpu > devices:
        args._n_gpu = devices
    return args
