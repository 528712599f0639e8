"""Optimizer state and checkpoint size: only trained weights count, computed on the meta device."""

from __future__ import annotations

import json

import pytest
import torch

from glue_lora.data.tasks import get_task
from glue_lora.train import run
from glue_lora.utils.memory import memory_figures, optimizer_state_bytes
from tests.helpers.runs import TINY, compose_tiny_run, compose_train, model_of
from tests.helpers.tokenizers import shared_roberta_tokenizer_dir

MB = 2**20


def meta_model(overrides: list[str]) -> torch.nn.Module:
    cfg = compose_train([*overrides, "model.pretrained=false"])
    with torch.device("meta"):
        return model_of(cfg, get_task("sst2"), device="meta")


def test_roberta_base_lora_vs_full_fine_tuning():
    lora = memory_figures(meta_model(["model=roberta_base"]))
    full = memory_figures(meta_model(["model=roberta_base", "lora=none"]))
    # r=8 on query and value of 12 layers (294,912) + the classification head (592,130).
    assert lora.trainable_params == 294_912 + 592_130
    assert 6.5 < lora.optimizer_state_mb < 7.5  # about 7 MB of AdamW moments
    assert 900 < full.optimizer_state_mb < 1000  # about 1 GB
    assert lora.checkpoint_mb < 15
    assert lora.adapter_mb < 4
    assert lora.frozen_params + lora.trainable_params == pytest.approx(full.trainable_params, rel=0.01)


def test_bf16_frozen_weights_halve():
    fp32 = memory_figures(meta_model(["model=roberta_base"]))
    bf16 = memory_figures(meta_model(["model=roberta_base", "model.frozen_dtype=bfloat16"]))
    assert bf16.frozen_weights_mb == pytest.approx(fp32.frozen_weights_mb / 2)
    assert bf16.optimizer_state_mb == fp32.optimizer_state_mb


def test_estimate_matches_a_real_checkpoint(glue_fixtures, token_cache, tmp_path):
    cfg = compose_tiny_run(glue_fixtures, token_cache, tmp_path, ["task=sst2"])
    results = run(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    weights = sum(v.numel() * v.element_size() for v in ckpt["state_dict"].values())
    moments = sum(
        v.numel() * v.element_size()
        for state in ckpt["optimizer_states"][0]["state"].values()
        for k, v in state.items()
        if k in ("exp_avg", "exp_avg_sq")
    )
    model = meta_model([*TINY[:1]])
    assert weights == results["params"]["trainable"] * 4
    assert moments == optimizer_state_bytes(model)
    assert json.loads((tmp_path / "results.json").read_text())["params"]["trainable"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )


@pytest.mark.slow
def test_roberta_base_lora_checkpoint_under_15_mb(glue_fixtures, tmp_path):
    """A real roberta-base (random weights, ~500 MB of RAM) trained one step: files under 15 MB."""
    tokenizer = shared_roberta_tokenizer_dir()
    if tokenizer is None:
        pytest.skip("no roberta-base tokenizer in ../shared/data/tokenizers or beside GLUE_DIR")
    cfg = compose_train(
        [
            "model=roberta_base",
            "model.pretrained=false",
            f"model.tokenizer={tokenizer}",
            "task=sst2",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.max_train_rows=8",
            "data.max_eval_rows=8",
            "data.batch_size=4",
            "trainer.max_steps=1",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path,
    )
    run(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").stat().st_size < 15 * MB
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size < 15 * MB
