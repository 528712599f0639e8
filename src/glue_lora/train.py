"""One training run, from a composed config to results.json and adapter/ (see DESIGN.md's flow)."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from glue_lora.adapters.init_adapter import check_init_adapter, load_init_adapter, prepare_init_adapter
from glue_lora.adapters.record import adapter_record
from glue_lora.adapters.save import save_adapter
from glue_lora.data.source import check_data_source
from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.model.backbone import build_config, build_tokenizer, check_max_length, check_vocabulary
from glue_lora.model.build import build_model
from glue_lora.model.data_driven_starts import initial_adapter
from glue_lora.model.lora import ParamCounts, check_budget, count_parameters
from glue_lora.model.quantization import RunDevice
from glue_lora.search.checks import check_held_out_rows, check_trial_settings
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import LoraSettings, lora_settings
from glue_lora.settings.method import MethodSettings, method_label, method_settings
from glue_lora.settings.model import ModelSettings
from glue_lora.settings.precision import PrecisionSettings
from glue_lora.settings.recipes import describe_recipe
from glue_lora.settings.run import ResumeSettings
from glue_lora.settings.validation import validate
from glue_lora.training.batching import BatchPlan, plan_batches, trainer_batch_arguments, trainer_settings
from glue_lora.training.gpus import rank_device
from glue_lora.training.optimizers import check_method_optimizer
from glue_lora.training.param_groups import tier_table
from glue_lora.training.tf32 import set_matmul_precision
from glue_lora.utils.artifacts import atomic_write_json, dir_size_mb
from glue_lora.utils.diskspace import run_bytes, warn_if_low
from glue_lora.utils.provenance import run_provenance
from glue_lora.utils.quiet import route_library_logs_through_hydra
from glue_lora.utils.run_files import ADAPTER, CHECKPOINTS, RESULTS

log = logging.getLogger(__name__)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed every generator; with ``deterministic`` also force deterministic kernels (before CUDA work)."""
    import lightning as L

    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    L.seed_everything(seed, workers=True, verbose=False)


def report_parameters(
    counts: ParamCounts,
    model: torch.nn.Module,
    plan: BatchPlan,
    method: MethodSettings,
    lora: LoraSettings | None,
    lr_tiers: dict[str, Any] | None,
    lr: float,
    precision: PrecisionSettings,
) -> None:
    print(f"method {method_label(method, lora)}: {counts.trainable:,} trainable parameters")
    print(counts.table())
    if budget := check_budget(counts, lora.as_dict() if lora is not None else None):
        print(budget)
    if lr_tiers:
        print(tier_table(model, lr_tiers, lr))
    print(plan.describe())
    print(precision.describe())


def dry_run(
    model_settings: ModelSettings,
    method: MethodSettings,
    lora: LoraSettings | None,
    spec: TaskSpec,
    max_length: int,
    report: Any,
) -> dict[str, Any]:
    """Build the model on the meta device (no weights, data or download), print its counts, exit."""
    model_settings = model_settings.on_meta_device()
    with torch.device("meta"):
        model = build_model(model_settings, lora, spec, device="meta", method=method)
    check_max_length(model, max_length, model_settings.name)
    counts = count_parameters(model, model_settings.trained_in_full)
    report(counts, model)
    return {"params": counts.as_dict()}


def progress_bar_enabled(setting: bool | str) -> bool:
    """``trainer.enable_progress_bar``: ``auto`` draws the bar only when stdout is a terminal.

    Redirected to a file or a cluster log, a progress bar is noise, and redrawing it costs about
    2% of a MiniLM step on CPU.
    """
    if setting == "auto":
        return sys.stdout.isatty()
    return bool(setting)


def check_run(cfg: DictConfig) -> TaskSpec:
    """The checks that take seconds, before any work: the data source and every config value."""
    spec = get_task(cfg.task.name)
    if not cfg.get("dry_run"):
        # No data directory, or no network for the Hub: said in seconds, before the config's checks
        # import Lightning and before any model is built.
        check_data_source(spec, cfg.task.data_dir)
    validate(cfg)
    check_trial_settings(cfg.get("hparams_search"), bool(cfg.data.get("dev_from_train")))
    return spec


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` says; returns the content written to results.json."""
    spec = check_run(cfg)
    log.info(describe_recipe(cfg.get("recipe"), cfg.model.name, spec.name))
    precision = PrecisionSettings.from_config(cfg)
    # Each group resolved once, into the typed settings that the helpers below get.
    model_settings = ModelSettings.from_config(cfg.model)
    method = method_settings(cfg.get("method"), cfg.get("lora"))
    # None for full fine-tuning and for methods that do not read the lora group (VeRA, BitFit ...).
    lora = lora_settings(cfg.get("lora"), model_settings.lora_targets) if method.uses_lora_group else None
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    lr_tiers = OmegaConf.to_container(cfg.lr_tiers, resolve=True) if cfg.get("lr_tiers") else None
    plan = plan_batches(data.batch_size, data.global_batch_size, trainer_settings(cfg.trainer))
    # lowered where more devices than the reference's share the global batch
    data = dataclasses.replace(data, batch_size=plan.per_device)
    check_method_optimizer(method, lr_tiers)

    def report(counts: ParamCounts, model: torch.nn.Module) -> None:
        report_parameters(counts, model, plan, method, lora, lr_tiers, cfg.optimizer.lr, precision)

    if cfg.get("dry_run"):
        return dry_run(model_settings, method, lora, spec, data.max_length, report)
    provenance = run_provenance()  # what produces this run's results, taken as it starts
    # fails here, before any work, when the adapter is missing
    check_init_adapter(cfg.get("init_adapter"), method)
    init = prepare_init_adapter(
        cfg.get("init_adapter"), model=model_settings.name, task=spec.name, lora=lora, recipe=cfg.recipe
    )

    route_library_logs_through_hydra()
    import lightning as L
    from hydra.utils import instantiate

    from glue_lora.data.datamodule import datamodule_from_settings
    from glue_lora.training.callbacks import ThroughputMeter
    from glue_lora.training.checkpointing import SafeCheckpointIO, checkpoint_callbacks, load_checkpoint
    from glue_lora.training.loggers import build_loggers, finish_loggers, run_group
    from glue_lora.training.metrics import best_evaluation
    from glue_lora.training.model_summary import model_summary_callbacks
    from glue_lora.training.module import SPLIT_RESULT_KEY, GlueLoRAModule
    from glue_lora.training.regularizers import TrainingLoss
    from glue_lora.training.reliability import reliability_callbacks
    from glue_lora.training.resume import finished_results, fit, prepare_resume, run_config
    from glue_lora.training.trainer_build import build_trainer

    # The run's resolved config, secrets masked: results.json, checkpoints and loggers record it,
    # and a resumed run is compared with it.
    config = run_config(cfg)
    resume = ResumeSettings(cfg.get("resume"), cfg.get("ckpt_path"))
    out_dir = Path(cfg.paths.output_dir)
    if (done := finished_results(config, resume, out_dir)) is not None:
        return done
    resume_from = prepare_resume(resume, config, out_dir)  # checked before anything is built
    set_determinism(cfg.seed, cfg.deterministic)
    if tf32 := set_matmul_precision(precision.tf32, precision.is_fp32, str(cfg.trainer.accelerator)):
        print(tf32)
    tokenizer = build_tokenizer(
        model_settings.config, build_config(model_settings.config, spec.num_labels, spec.is_regression)
    )
    datamodule = datamodule_from_settings(data, spec, tokenizer)
    # Read and check every file before the model is built, so bad data never costs training time
    # (reading draws nothing from the random stream the model's start uses).
    datamodule.setup("fit")
    check_held_out_rows(
        cfg.get("hparams_search"), spec.name, len(datamodule.splits["dev"]), data.val_fraction
    )
    calibration = None
    if method.needs_calibration:
        calibration = datamodule.calibration_batches(method.calibration_batches)
    run_device = RunDevice(precision.precision, cfg.trainer.get("devices", 1))
    model = build_model(
        model_settings,
        lora,
        spec,
        method=method,
        calibration=calibration,
        run=run_device,
        start_device=rank_device(cfg.trainer),
    )
    # CorDA's and LoRA-GA's B0 A0, saved with the adapter: the base's residual is rebuilt from them.
    initial = initial_adapter(model) if method.saves_initial_adapter else None
    check_max_length(model, data.max_length, model_settings.name)
    load_init_adapter(model, init, spec, model_settings.trained_in_full)
    check_vocabulary(model, tokenizer)
    counts = count_parameters(model, model_settings.trained_in_full)
    report(counts, model)
    warn_if_low(out_dir, run_bytes(counts.trainable, counts.total, full_model_saved=method.is_full))

    module = GlueLoRAModule(
        model,
        spec,
        instantiate(cfg.optimizer),
        cfg.schedule,
        lr_tiers=lr_tiers,
        training_loss=TrainingLoss.from_config(cfg.get("regularizer"), spec.is_regression),
        method=method,
        lora=lora,
    )

    checkpoint, checkpoints = checkpoint_callbacks(
        out_dir / CHECKPOINTS,
        f"val/{spec.primary_metric}",
        (cfg.get("checkpoint") or {}).get("every_n_train_steps"),
    )
    meter = ThroughputMeter()
    extra_callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if method.peft_type == "adalora":
        from glue_lora.training.adalora import AdaLoraSchedule

        extra_callbacks.append(AdaLoraSchedule())  # AdaLoRA's rank budget follows the run's steps
    group = run_group(spec.name, model_settings.name, method_label(method, lora))
    loggers = build_loggers(cfg.get("logger"), config, group, cfg.seed)
    trainer: L.Trainer = build_trainer(
        cfg.trainer,
        **trainer_batch_arguments(plan, cfg.trainer.get("val_check_interval")),
        enable_progress_bar=progress_bar_enabled(cfg.trainer.get("enable_progress_bar", "auto")),
        enable_model_summary=False,  # ours instead, when on: model_summary_callbacks below
        callbacks=[
            *checkpoints,
            meter,
            *reliability_callbacks(config, out_dir, cfg.get("nonfinite_loss_check_every_n_steps")),
            *model_summary_callbacks(cfg.trainer.get("enable_model_summary", True)),
            *extra_callbacks,
        ],
        logger=loggers,
        plugins=[SafeCheckpointIO()],
    )
    fit(trainer, module, datamodule, resume_from)

    if checkpoint.best_model_path:
        # The adapter is saved from the best checkpoint, not from the last step.
        best = load_checkpoint(checkpoint.best_model_path)
        module.load_state_dict(best["state_dict"], strict=False)
    if not module.history:  # no validation ran during fit (e.g. max_steps inside the first epoch)
        trainer.validate(module, datamodule=datamodule, verbose=False)
    history = module.history
    best_entry = best_evaluation(history, spec.primary_metric)

    results: dict[str, Any] = {
        "stack": "ours",
        "task": spec.name,
        "model": model_settings.name,
        "model_name_or_path": model_settings.shareable_source(),
        "lora": lora.as_dict() if lora is not None else None,
        "method": method.as_dict(),
        "seed": cfg.seed,
        "metric": spec.primary_metric,
        "score": best_entry["dev"][spec.primary_metric],
        "dev": best_entry["dev"],
    }
    for split in spec.eval_splits[1:]:
        results[SPLIT_RESULT_KEY[split]] = best_entry[SPLIT_RESULT_KEY[split]]
    results["best"] = {"epoch": best_entry["epoch"], "step": best_entry["step"]}
    results["history"] = history
    results["params"] = counts.as_dict()
    results["train"] = meter.summary(module.device)
    results["provenance"] = provenance
    # The run's resolved config (secrets masked): a sweep re-run with resume=true compares it.
    results["config"] = config

    if trainer.is_global_zero:
        record = adapter_record(spec, model_settings, lora, data, cfg.seed, cfg.trainer.precision, method)
        save_adapter(module.model, out_dir / ADAPTER, record, spec, results, initial)
        results["sizes"] = {"adapter_mb": round(dir_size_mb(out_dir / ADAPTER), 3)}
        atomic_write_json(out_dir / RESULTS, results)
        finish_loggers(loggers, results)
        print(
            f"dev {spec.primary_metric} {results['score']:.4f} (best at epoch {best_entry['epoch']}, "
            f"step {best_entry['step']}); results in {out_dir / RESULTS}"
        )
    return results
