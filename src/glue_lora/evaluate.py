"""eval.py's run: a saved adapter -> dev metrics (eval_results.json) or GLUE test-set predictions.

The model is rebuilt from the adapter's own ``glue_lora.json``; the data are read, tokenized and
batched by the same ``GlueDataModule`` and scored by the same ``GlueLoRAModule`` as in training, so
dev metrics reproduce those of the training run exactly (same eval batch size and precision).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from glue_lora.adapters.loading import load_model
from glue_lora.adapters.record import AdapterInfo, read_adapter
from glue_lora.data.tasks import TaskSpec, get_task
from glue_lora.model.backbone import check_max_length
from glue_lora.settings.data import DataSettings
from glue_lora.training.metrics import build_metrics, predictions_from_logits
from glue_lora.training.module import SPLIT_RESULT_KEY
from glue_lora.utils.artifacts import atomic_open, atomic_write_json
from glue_lora.utils.errors import ConfigError
from glue_lora.utils.provenance import run_provenance
from glue_lora.utils.quiet import route_library_logs_through_hydra

log = logging.getLogger(__name__)

SPLITS = ("dev", "test")


def eval_task(info: AdapterInfo, task: str | None) -> TaskSpec:
    """The task to evaluate on: the adapter's own, or another one with the same labels."""
    spec = get_task(task or info.task)
    if spec.label_names != info.label_names:
        raise ConfigError(
            f"The adapter {info.path} was trained on {info.task} (labels {info.label_names}); task="
            f"{spec.name} has labels {spec.label_names}, so its head cannot score it. Leave task unset "
            "to evaluate on the adapter's own task, or give an adapter trained on this task."
        )
    if spec.name != info.task:
        log.warning("Evaluating a %s adapter on %s (same labels).", info.task, spec.name)
    return spec


def data_dir_for(data: DictConfig, task: DictConfig | None, paths: DictConfig, spec: TaskSpec) -> str | None:
    """``data.data_dir``, else task=...'s, else ``paths.<task>_dir`` if any, else ``paths.glue_dir``."""
    if data.get("data_dir"):
        return str(data.data_dir)
    if task is not None and task.name == spec.name:
        return task.get("data_dir")
    key = f"{spec.name}_dir"
    return paths.get(key) if key in paths else paths.get("glue_dir")


def format_prediction(spec: TaskSpec, value: float | int) -> str:
    """One prediction as the leaderboard wants it: the label as written in the task's files, or a score."""
    if spec.is_regression:
        low, high = spec.score_range or (-float("inf"), float("inf"))
        return f"{min(max(float(value), low), high):.3f}"
    return spec.label_names[int(value)]


# Header of a submission file by its suffix: GLUE's TSVs, and ID,Label CSVs (AG News).
SUBMISSION_HEADERS = {".tsv": ("index", "prediction"), ".csv": ("ID", "Label")}


def write_predictions(
    spec: TaskSpec, path: Path, idx: Sequence[int], predictions: Sequence[float | int]
) -> Path:
    """A submission file: its header, then one ``index<TAB>prediction`` (or ``ID,Label``) row per
    test row, in index order; written atomically."""
    delimiter = "," if path.suffix == ".csv" else "\t"
    rows = sorted(zip((int(i) for i in idx), predictions, strict=True))
    lines = [delimiter.join(SUBMISSION_HEADERS[path.suffix])]
    lines += [f"{i}{delimiter}{format_prediction(spec, p)}" for i, p in rows]
    with atomic_open(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path


# What an adapter saved before glue_lora.json recorded its evaluation was evaluated with.
EVALUATION_DEFAULTS = {"precision": "32-true", "batch_size": 128, "padding": "longest"}


def evaluation_settings(trainer: DictConfig, data: DictConfig, info: AdapterInfo) -> dict[str, Any]:
    """Precision, eval batch size and padding: the command line's, else those the run evaluated with.

    The same settings give the training run's dev metrics bit for bit on the same kind of device.
    """
    recorded = {**EVALUATION_DEFAULTS, **info.evaluation}
    settings = {
        "precision": trainer.get("precision") or recorded["precision"],
        "batch_size": data.get("eval_batch_size") or recorded["batch_size"],
        "padding": data.get("padding") or recorded["padding"],
    }
    on_gpu = trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if str(settings["precision"]).startswith("16") and not on_gpu:
        log.warning(
            "The run evaluated in %s, which needs a GPU; evaluating in 32-true here, so metrics may "
            "differ in the last digits. Run eval.py on a GPU to reproduce them exactly.",
            settings["precision"],
        )
        settings["precision"] = "32-true"
    return settings


def eval_data_settings(
    data: DictConfig, data_dir: str | None, max_length: int, settings: dict
) -> DataSettings:
    """eval.py's ``data`` group, with the adapter's max_length and the evaluation ``settings``."""
    return DataSettings(
        data_dir=data_dir,
        max_length=max_length,
        batch_size=settings["batch_size"],
        eval_batch_size=settings["batch_size"],
        num_workers=data.num_workers,
        cache_dir=data.cache_dir,
        val_fraction=data.val_fraction,
        max_eval_rows=data.max_eval_rows,
        skip_malformed_rows=data.skip_malformed_rows,
        padding=settings["padding"],
    )


def _predict(trainer: Any, module: Any, datamodule: Any, spec: TaskSpec, out_dir: Path) -> dict[str, Any]:
    outputs = trainer.predict(module, datamodule=datamodule)
    splits = list(spec.leaderboard_files)
    if len(splits) == 1:  # Lightning returns a flat list for a single dataloader
        outputs = [outputs]
    results: dict[str, Any] = {"predictions": {}, "rows": {}}
    for split, batches in zip(splits, outputs, strict=True):
        idx = torch.cat([b["idx"] for b in batches]).tolist()
        logits = torch.cat([b["logits"] for b in batches])
        preds = predictions_from_logits(spec, logits)
        path = write_predictions(spec, out_dir / spec.leaderboard_files[split], idx, preds.tolist())
        results["predictions"][split] = str(path)
        results["rows"][split] = len(idx)
        if all("labels" in b for b in batches):  # a labelled test split (AG News): score it too
            metrics = build_metrics(spec)
            metrics.update(preds, torch.cat([b["labels"] for b in batches]))
            results[split] = {name: float(v) for name, v in metrics.compute().items()}
        log.info("%s %s: %d predictions in %s", spec.name, split, len(idx), path)
    return results


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.adapter`` on ``cfg.split``; returns the content written to eval_results.json."""

    provenance = run_provenance()  # what produces these results, taken as the evaluation starts
    route_library_logs_through_hydra()
    from glue_lora.data.datamodule import datamodule_from_settings
    from glue_lora.training.module import GlueLoRAModule
    from glue_lora.training.trainer_build import build_trainer

    if cfg.split not in SPLITS:
        raise ConfigError(
            f"split={cfg.split!r} is unknown: use split=dev (metrics) or split=test (predictions)."
        )
    info = read_adapter(cfg.adapter)
    spec = eval_task(info, cfg.task.name if cfg.get("task") is not None else None)
    if cfg.split == "test" and not spec.leaderboard_files:
        raise ConfigError(f"Task {spec.name} has no test split to predict; use split=dev.")
    out_dir = Path(cfg.paths.output_dir)
    model, tokenizer, info = load_model(info)
    max_length = cfg.data.get("max_length") or info.max_length
    check_max_length(model, max_length, info.model.get("name"))
    settings = evaluation_settings(cfg.trainer, cfg.data, info)
    data_dir = data_dir_for(cfg.data, cfg.get("task"), cfg.paths, spec)
    data = eval_data_settings(cfg.data, data_dir, max_length, settings)
    datamodule = datamodule_from_settings(data, spec, tokenizer)
    module = GlueLoRAModule(model, spec, optimizer=None, schedule={})
    trainer = build_trainer(cfg.trainer, precision=settings["precision"])

    results: dict[str, Any] = {
        "adapter": str(info.path),
        "task": spec.name,
        "model": info.model.get("name"),
        "split": cfg.split,
        "evaluation": settings,
    }
    if cfg.split == "dev":
        trainer.validate(module, datamodule=datamodule, verbose=False)
        entry = module.history[-1]
        results.update(metric=spec.primary_metric, score=entry["dev"][spec.primary_metric])
        for split in spec.eval_splits:
            results[SPLIT_RESULT_KEY[split]] = entry[SPLIT_RESULT_KEY[split]]
        results["rows"] = {split: len(datamodule.splits[split]) for split in spec.eval_splits}
        summary = f"dev {spec.primary_metric} {results['score']:.4f}"
    else:
        results.update(_predict(trainer, module, datamodule, spec, out_dir))
        summary = f"{sum(results['rows'].values())} test predictions in {out_dir}"
    results["provenance"] = provenance
    atomic_write_json(out_dir / "eval_results.json", results)
    print(f"{summary}; results in {out_dir / 'eval_results.json'}")
    return results
