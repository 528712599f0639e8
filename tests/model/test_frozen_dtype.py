"""Frozen weights in bf16/fp16 while LoRA and the head train in fp32 (model.frozen_dtype)."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from glue_lora.data.tasks import get_task
from glue_lora.model.lora import count_parameters
from glue_lora.train import run
from tests.helpers.runs import CONF, compose_tiny_run, compose_train, model_of


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


METHODS = sorted(path.stem for path in (CONF / "method").glob("*.yaml"))
FROZEN_DTYPES = ("float32", "float16", "bfloat16")
# Small enough for the tiny RoBERTa (hidden size 32), as in tests/adapters/test_methods.py.
SMALL = {
    "vera": ["method.peft_options.r=16"],
    "fourierft": ["method.peft_options.n_frequency=64"],
    "adalora": ["method.peft_options.init_r=4", "lora.r=2"],
}
# LoftQ's start quantizes on a GPU: built on the meta device, as a dry run builds it.
META_ONLY = {"loftq"}


@pytest.fixture(scope="module")
def method_configs():
    """Each method's config on the tiny RoBERTa, composed once (the frozen dtype is set per test)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return {
            method: compose(
                config_name="train",
                overrides=["model=tiny_roberta", f"method={method}", *SMALL.get(method, [])],
            )
            for method in METHODS
        }


@pytest.mark.parametrize("dtype", FROZEN_DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_fp32_weights_whatever_the_frozen_dtype(method_configs, method, dtype):
    cfg = method_configs[method].copy()
    cfg.model.frozen_dtype = dtype
    meta = method in META_ONLY
    if meta:
        with torch.device("meta"):
            net = model_of(cfg, get_task("rte"), device="meta")
    else:
        net = model_of(cfg, get_task("rte"))
    trained = {n: p for n, p in net.named_parameters() if p.requires_grad}
    assert trained and {p.dtype for p in trained.values()} == {torch.float32}, method
    counts = count_parameters(net, cfg.model.trained_in_full)
    assert counts.trainable_dtypes == ("float32",)
    assert f"{counts.trainable:,} (float32)" in counts.table()
    if method != "full":  # full fine-tuning trains every weight: none is left frozen
        assert counts.frozen_dtypes[0] == dtype  # most frozen weights keep the frozen dtype
        assert f"{counts.frozen:,} ({', '.join(counts.frozen_dtypes)})" in counts.table()
    if meta:
        return
    ids = torch.randint(5, 500, (4, 9))
    out = net(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 1, 0]))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in trained.values() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)


def test_a_dry_run_names_the_dtypes_of_trained_and_frozen_weights(capsys):
    run(compose_train(["model=roberta_base", "task=rte", "model.frozen_dtype=float16", "dry_run=true"]))
    out = capsys.readouterr().out
    assert "trainable            887,042 (float32)" in out
    assert "frozen           124,055,040 (float16)" in out
