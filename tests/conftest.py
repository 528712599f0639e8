"""Shared test helpers: compose the real Hydra config in-process, run train.py as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from tests.fixtures import write_all

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
REAL_GLUE = os.environ.get("GLUE_DIR")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

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


def flag_twins(model: str, flag: str) -> tuple[Any, Any]:
    """``model`` built with ``model.<flag>=false`` and ``=true``, with the same weights.

    LoRA B starts at zero; it is drawn at random here so that LoRA matters in the comparison.
    """
    import torch

    from glue_lora.data.tasks import get_task
    from glue_lora.model.build import build_model

    torch.manual_seed(0)
    off = build_model(compose_train([f"model={model}", f"model.{flag}=false"]), get_task("sst2"))
    on = build_model(compose_train([f"model={model}", f"model.{flag}=true"]), get_task("sst2"))
    with torch.no_grad():
        for name, p in off.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    on.load_state_dict(off.state_dict())
    return off, on


def eval_logits_and_grads(net: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, dict[str, Any]]:
    """Logits and the trained parameters' gradients of one batch in eval mode (no dropout)."""
    net.eval()
    out = net(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    return out.logits, {n: p.grad for n, p in net.named_parameters() if p.requires_grad}


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


@pytest.fixture(scope="session")
def glue_fixtures(tmp_path_factory) -> Path:
    """A GLUE directory (and ag_news/) with small files in every task's real layout."""
    return write_all(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("token_cache")


@pytest.fixture
def real_glue() -> Path:
    if not REAL_GLUE or not Path(REAL_GLUE).is_dir():
        pytest.skip("GLUE_DIR is not set to a local GLUE directory")
    return Path(REAL_GLUE)
