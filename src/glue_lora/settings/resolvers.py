"""Resolvers that config files may use; registered on ``import glue_lora``, before Hydra resolves."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def lora_or_full(lora_value: Any, full_value: Any, *, _root_: DictConfig) -> Any:
    """``${lora_or_full:5e-4,5e-5}``: the first value for LoRA, the second for full fine-tuning
    (``lora=none``). A recipe uses it where the two need different values, e.g. the learning rate."""
    return full_value if _root_.get("lora") is None else lora_value


def by_method(values: Any, *, _root_: DictConfig) -> Any:
    """``${by_method:${method_lr}}``: the entry of a ``{method name: value}`` table for the run's method
    (``method.name``; ``full`` for ``lora=none`` with the LoRA method). An experiment that compares
    methods uses it where they need different values, e.g. each method's learning rate."""
    from glue_lora.settings.method import method_settings
    from glue_lora.utils.errors import ConfigError

    name = method_settings(_root_.get("method"), _root_.get("lora")).name
    if name not in values:
        raise ConfigError(
            f"by_method: no value for method={name} in {sorted(values)}: add a {name}: entry to the "
            "table the config passes to ${by_method:...}."
        )
    return values[name]


def precision(preset: Any, *, _root_: DictConfig) -> Any:
    """``${precision:bf16-mixed}`` in a trainer preset: the recipe's ``recipe_precision`` where the
    recipe sets one, else the preset's own. ``trainer.precision=...`` replaces it and wins."""
    recipe = _root_.get("recipe_precision")
    return preset if recipe is None else recipe


def visible_gpus() -> int:
    """``${visible_gpus:}``: how many GPUs this process may use, counted without initialising CUDA."""
    from glue_lora.training.gpus import visible_gpus as gpu_ids

    return len(gpu_ids())


def searched(results_dir: str, key: str, *, _root_: DictConfig) -> Any:
    """``${searched:<dir>,optimizer.lr}``: the best value of ``key`` that the search of the run's task
    and method found, from ``<dir>/<task>/<method>/optimization_results.yaml`` (Optuna's file)."""
    from pathlib import Path

    from glue_lora.settings.method import method_settings
    from glue_lora.utils.errors import ConfigError

    method = method_settings(_root_.get("method"), _root_.get("lora")).name
    path = Path(results_dir) / str(_root_.task.name) / method / "optimization_results.yaml"
    if not path.is_file():
        raise ConfigError(
            f"searched: {path} does not exist, so there is no searched {key} for task={_root_.task.name} "
            f"method={method}. Run its search first (python train.py experiment=method_search "
            f"task={_root_.task.name} method={method}, docs/search.md) and copy its "
            "optimization_results.yaml there."
        )
    best = OmegaConf.load(path).get("best_params") or {}
    if key not in best:
        raise ConfigError(f"searched: {path} has no {key} among its best_params ({', '.join(best)}).")
    return best[key]


def register() -> None:
    if not OmegaConf.has_resolver("lora_or_full"):
        OmegaConf.register_new_resolver("lora_or_full", lora_or_full)
    if not OmegaConf.has_resolver("by_method"):
        OmegaConf.register_new_resolver("by_method", by_method)
    if not OmegaConf.has_resolver("precision"):
        OmegaConf.register_new_resolver("precision", precision)
    if not OmegaConf.has_resolver("visible_gpus"):
        OmegaConf.register_new_resolver("visible_gpus", visible_gpus)
    if not OmegaConf.has_resolver("searched"):
        OmegaConf.register_new_resolver("searched", searched)
