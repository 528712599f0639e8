"""Composing the real Hydra config in-process, and running train.py / eval.py as a user would."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
REAL_GLUE = os.environ.get("GLUE_DIR")

# Keeps every test run fast: a tiny model, a few rows, two short epochs, no progress bar.
TINY = [
    "model=tiny_roberta",
    "data.max_train_rows=48",
    "data.max_eval_rows=24",
    "data.batch_size=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The config `python train.py <overrides>` would run, with the run directory set."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_tiny_run(glue_dir: Path, cache_dir: Path, output_dir: Path, overrides: list[str]) -> DictConfig:
    """A ``TINY`` train.py run on the fixture GLUE files, sharing the session's token cache."""
    return compose_train(
        [*TINY, f"paths.glue_dir={glue_dir}", f"data.cache_dir={cache_dir}", *overrides], output_dir
    )


def compose_eval(overrides: list[str], output_dir: Path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_tiny_eval(run_dir: Path, glue_dir: Path, cache_dir: Path, output_dir: Path) -> DictConfig:
    """eval.py of a ``TINY`` run on the fixture GLUE files: the dev rows it trained with."""
    overrides = [
        f"adapter={run_dir}",
        f"paths.glue_dir={glue_dir}",
        f"data.cache_dir={cache_dir}",
        "data.max_eval_rows=24",  # as TINY trained with
        "trainer.enable_progress_bar=false",
    ]
    return compose_eval(overrides, output_dir)


def run_cli(script: str, args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 600):
    """Run `python <script> <args>` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name))


def model_of(cfg: DictConfig, spec, device: str | None = None, calibration=None):
    """``build_model`` with the model and LoRA settings of ``cfg``, as train.run builds them
    (``calibration``: the train batches of a data-driven start)."""
    from glue_lora.model.build import build_model
    from glue_lora.settings.model import ModelSettings

    model = ModelSettings.from_config(cfg.model)
    method, lora = method_and_lora_of(cfg, model.lora_targets)
    return build_model(model, lora, spec, device=device, method=method, calibration=calibration)


def method_and_lora_of(cfg: DictConfig, targets):
    """The run's method and LoRA settings, as train.run reads them (``lora`` None where unused)."""
    from glue_lora.settings.lora import lora_settings
    from glue_lora.settings.method import method_settings

    method = method_settings(cfg.get("method"), cfg.get("lora"))
    lora = lora_settings(cfg.get("lora"), targets) if method.uses_lora_group else None
    return method, lora


def datamodule_of(cfg: DictConfig, spec, tokenizer):
    """The data module train.run builds for ``cfg``."""
    from glue_lora.data.datamodule import datamodule_from_settings
    from glue_lora.settings.data import DataSettings

    return datamodule_from_settings(DataSettings.for_training(cfg.data, cfg.task, cfg.seed), spec, tokenizer)


def init_adapter_of(cfg: DictConfig):
    """``prepare_init_adapter`` with the settings of ``cfg``, as train.run calls it."""
    from glue_lora.adapters.init_adapter import prepare_init_adapter
    from glue_lora.settings.lora import lora_settings

    lora = lora_settings(cfg.get("lora"), cfg.model.lora_targets)
    return prepare_init_adapter(
        cfg.get("init_adapter"), model=cfg.model.name, task=cfg.task.name, lora=lora, recipe=cfg.get("recipe")
    )


def record_of(cfg: DictConfig, spec) -> dict:
    """The glue_lora.json record train.run writes for ``cfg``."""
    from glue_lora.adapters.record import adapter_record
    from glue_lora.settings.data import DataSettings
    from glue_lora.settings.model import ModelSettings

    model = ModelSettings.from_config(cfg.model)
    method, lora = method_and_lora_of(cfg, model.lora_targets)
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    return adapter_record(spec, model, lora, data, cfg.seed, cfg.trainer.precision, method)
