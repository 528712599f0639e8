"""Frozen weights in bf16/fp16 while LoRA and the head train in fp32 (model.frozen_dtype)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from glue_lora.data.tasks import get_task
from glue_lora.train import run
from tests.helpers.runs import compose_tiny_run, compose_train, model_of


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_frozen_weights_train_in_fp32(model, dtype):
    name = str(dtype).removeprefix("torch.")
    cfg = compose_train([f"model={model}", f"model.frozen_dtype={name}"])
    net = model_of(cfg, get_task("rte"))
    frozen = {p.dtype for p in net.parameters() if not p.requires_grad}
    trained = {n: p for n, p in net.named_parameters() if p.requires_grad}
    assert frozen == {dtype}
    assert {p.dtype for p in trained.values()} == {torch.float32}
    assert any("lora_" in n for n in trained) and any("classifier" in n for n in trained)

    ids = torch.randint(5, 500, (4, 9))
    out = net(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 1, 0]))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in trained.values()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_bf16_frozen_run_saves_fp32_adapter(glue_fixtures, token_cache, tmp_path):
    cfg = compose_tiny_run(
        glue_fixtures,
        token_cache,
        tmp_path,
        ["task=sst2", "model.frozen_dtype=bfloat16", "trainer.max_epochs=1"],
    )
    results = run(cfg)
    assert 0.0 <= results["score"] <= 1.0
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert weights and {w.dtype for w in weights.values()} == {torch.float32}
