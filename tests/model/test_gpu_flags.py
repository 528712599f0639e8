"""Flags for GPU runs that can be checked on a CPU: gradient checkpointing, and QLoRA's clear refusal."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from glue_lora.model.backbone import build_backbone
from glue_lora.model.lora import apply_lora
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_train


def lora_grads(gradient_checkpointing: bool) -> dict[str, torch.Tensor]:
    cfg = compose_train(["model=tiny_roberta", f"model.gradient_checkpointing={gradient_checkpointing}"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(0)
    model = build_backbone(model_cfg, 2)
    model = apply_lora(model, {"r": 4, "alpha": 8}, ["query", "value"], ["classifier"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    assert model.base_model.model.is_activation_checkpointing is gradient_checkpointing
    torch.manual_seed(1)
    ids = torch.randint(5, 1000, (4, 16))
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_gradients():
    plain, checkpointed = lora_grads(False), lora_grads(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_4bit_quantization_without_a_gpu_says_what_to_do():
    cfg = compose_train(["model=tiny_roberta", "model.quantize=4bit"])
    with pytest.raises(ConfigError, match=r"model.quantize=4bit needs a CUDA GPU.*model.quantize=none"):
        build_backbone(OmegaConf.to_container(cfg.model, resolve=True), 2)


def test_unknown_quantization_is_refused():
    cfg = compose_train(["model=tiny_roberta", "model.quantize=8bit"])
    with pytest.raises(ConfigError, match=r"model\.quantize=8bit is not supported"):
        build_backbone(OmegaConf.to_container(cfg.model, resolve=True), 2)
