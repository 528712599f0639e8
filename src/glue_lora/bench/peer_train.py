"""``stack=peer``: one run trained by transformers ``Trainer`` + peft instead of our Lightning loop.

The same cell as ours (rows, model, LoRA config, optimizer settings, schedule, batch, epochs and
evaluation points) through the tools most users reach for, written as ``results.json`` in our
layout, so a sweep's summary sets the two stacks side by side (``variant=peer_lora``). It pads each
batch to its longest row and, where ours groups by length (the default), uses ``Trainer``'s
``group_by_length`` (the benchmark's ``peer_best``). That order is not ours: transformers'
``LengthGroupedSampler`` sorts each megabatch of up to 50 batches from long to short and does not
shuffle them, while ours draws its length-grouped batches in random order. Our speed-ups (fused
LoRA, fast dropout, the [CLS]-only last layer) do not apply:
it runs transformers' and peft's own modules. Its adapter is the one of the last step.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from glue_lora.data.source import check_data_source
from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.settings.lora import lora_dict
from glue_lora.settings.method import FULL, LORA, method_settings
from glue_lora.settings.validation import validate
from glue_lora.training.batching import count_devices, plan_batches
from glue_lora.utils.artifacts import atomic_write_json, dir_size_mb
from glue_lora.utils.errors import ConfigError
from glue_lora.utils.provenance import run_provenance
from glue_lora.utils.run_files import ADAPTER, RESULTS

# What the peer stack cannot do as ours does; each is refused rather than silently ignored.
UNSUPPORTED = {
    "init_adapter": "an MNLI start (init_adapter)",
    "lr_tiers": "layer-wise learning rates (lr_tiers)",
    "regularizer.rdrop_alpha": "R-Drop (regularizer.rdrop_alpha)",
    "regularizer.cutoff.kind": "Cutoff (regularizer.cutoff.kind)",
}


def check_peer_config(cfg: DictConfig) -> None:
    """Refuse settings the ``Trainer`` + peft stack has no equivalent for here."""
    asked = [what for key, what in UNSUPPORTED.items() if OmegaConf.select(cfg, key)]
    optimizer = str(cfg.optimizer.get("_target_", ""))
    if not optimizer.endswith("AdamW"):
        asked.append(f"the optimizer {optimizer}")
    if count_devices(cfg.trainer) != 1:  # "auto" on a machine with several GPUs too
        asked.append("several devices")
    method = method_settings(cfg.get("method"), cfg.get("lora"))
    if method not in (LORA, FULL):
        asked.append(f"method={method.name} (the peer trains plain LoRA or, with lora=none, every weight)")
    if asked:
        raise ConfigError(
            f"stack=peer trains with transformers Trainer + peft, which has no equivalent here for "
            f"{', '.join(asked)}. Leave these at their defaults for the peer, or use stack=ours."
        )


def _evaluation_every(interval: Any, steps_per_epoch: int) -> int:
    """Optimizer steps between evaluations, as Lightning reads ``trainer.val_check_interval``."""
    if isinstance(interval, int) and not isinstance(interval, bool):
        return interval
    return max(1, int(steps_per_epoch * float(interval or 1.0)))


def _history(log_history: list[dict[str, Any]], spec: TaskSpec, steps_per_epoch: int) -> list[dict[str, Any]]:
    """The Trainer's evaluations as our history entries (0-based epoch, optimizer step, dev metrics)."""
    history = []
    for entry in log_history:
        if f"eval_{spec.primary_metric}" not in entry:
            continue
        step = int(entry["step"])
        dev = {name: float(entry[f"eval_{name}"]) for name in spec.metrics if f"eval_{name}" in entry}
        history.append({"epoch": max(0, math.ceil(step / steps_per_epoch) - 1), "step": step, "dev": dev})
    return history


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train the cell ``cfg`` describes with ``Trainer`` + peft; returns what results.json holds."""
    spec = get_task(cfg.task.name)
    check_data_source(spec, cfg.task.data_dir)
    validate(cfg)
    check_peer_config(cfg)
    from glue_lora.settings.run import ResumeSettings
    from glue_lora.training.resume import finished_results, run_config

    out_dir = Path(cfg.paths.output_dir)
    resume = ResumeSettings(cfg.get("resume"), cfg.get("ckpt_path"))
    config = run_config(cfg)  # resolved once, secrets masked
    if (done := finished_results(config, resume, out_dir)) is not None:
        return done
    provenance = run_provenance()  # what produces this run's results, taken as it starts

    import datasets
    import torch
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from glue_lora.bench.common import optimizer_state_mb
    from glue_lora.bench.peer_stack import peer_dataset, peer_metrics, peer_model, peer_training_arguments
    from glue_lora.data.datamodule import datamodule_from_settings
    from glue_lora.model.lora import count_parameters
    from glue_lora.settings.data import DataSettings
    from glue_lora.training.metrics import best_evaluation
    from glue_lora.training.module import warmup_steps
    from glue_lora.utils.memory import peak_memory_mb

    class TimedTrainer(Trainer):
        """Counts the seconds spent evaluating, so the training throughput excludes them as ours does."""

        eval_seconds = 0.0

        def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            start = time.perf_counter()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self.eval_seconds += time.perf_counter() - start

    datasets.disable_progress_bars()
    set_seed(cfg.seed)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    lora = lora_dict(cfg)
    model, tokenizer = peer_model(model_cfg, spec, lora)
    counts = count_parameters(model, model_cfg["trained_in_full"])
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    rows = datamodule_from_settings(data, spec, tokenizer).read_all()
    train = peer_dataset(rows["train"], tokenizer, cfg.data.max_length, padding=False)
    dev = peer_dataset(rows["dev"], tokenizer, cfg.data.max_length, padding=False)

    plan = plan_batches(cfg.data.batch_size, cfg.data.get("global_batch_size"), cfg.trainer)
    steps_per_epoch = max(1, math.ceil(len(train) / plan.per_device) // plan.accumulation)
    max_steps = int(cfg.trainer.get("max_steps", -1) or -1)
    total_steps = max_steps if max_steps > 0 else steps_per_epoch * int(cfg.trainer.max_epochs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args = peer_training_arguments(
        cfg,
        output_dir=out_dir / "peer_trainer",
        device=device,
        group_by_length=cfg.data.get("sampler", "length_grouped") == "length_grouped",
        warmup=warmup_steps(cfg.schedule, total_steps),
        max_steps=total_steps,
        gradient_accumulation_steps=plan.accumulation,
        eval_strategy="steps",
        eval_steps=_evaluation_every(cfg.trainer.get("val_check_interval"), steps_per_epoch),
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=not sys.stdout.isatty(),
        devices=plan.devices,
    )
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=cfg.data.get("pad_to_multiple_of"))
    trainer = TimedTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        processing_class=tokenizer,
        data_collator=collate,
        compute_metrics=peer_metrics(spec),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = _history(trainer.state.log_history, spec, steps_per_epoch)
    if not history:  # no evaluation point inside the run
        trainer.evaluate()
        history = _history(trainer.state.log_history, spec, steps_per_epoch)
    best_entry = best_evaluation(history, spec.primary_metric)
    train_seconds = max(seconds - trainer.eval_seconds, 1e-9)
    trained_rows = (
        len(train) * int(cfg.trainer.max_epochs) if max_steps <= 0 else max_steps * plan.global_batch
    )
    results: dict[str, Any] = {
        "stack": "peer",
        "task": spec.name,
        "model": cfg.model.name,
        "lora": lora,
        "seed": cfg.seed,
        "metric": spec.primary_metric,
        "score": best_entry["dev"][spec.primary_metric],
        "dev": best_entry["dev"],
        "best": {"epoch": best_entry["epoch"], "step": best_entry["step"]},
        "history": history,
        "params": counts.as_dict(),
        "train": {
            "seconds": round(seconds, 3),
            "train_seconds": round(train_seconds, 3),
            "samples_per_second": round(trained_rows / train_seconds, 2),
            "peak_memory_mb": round(peak_memory_mb(torch.device(device)), 1),
            "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
            "optimizer_state_mb": round(optimizer_state_mb(trainer.optimizer), 3),
        },
        "config": config,
    }
    results["provenance"] = provenance
    trainer.model.save_pretrained(out_dir / ADAPTER)
    results["sizes"] = {"adapter_mb": round(dir_size_mb(out_dir / ADAPTER), 3)}
    atomic_write_json(out_dir / RESULTS, results)
    print(
        f"dev {spec.primary_metric} {results['score']:.4f} (peer: Trainer + peft; best at step "
        f"{best_entry['step']}); results in {out_dir / RESULTS}"
    )
    return results
