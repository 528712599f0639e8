"""model.fused_lora: the same logits, gradients and merged weights as peft's own LoRA forward."""

from __future__ import annotations

import pytest
import torch

from glue_lora.lora_fused import FusedAddVariant
from glue_lora.tasks import get_task
from glue_lora.train import build_model
from tests.conftest import compose_train


def _pair(model: str):
    torch.manual_seed(0)
    plain = build_model(compose_train([f"model={model}", "model.fused_lora=false"]), get_task("sst2"))
    fused = build_model(compose_train([f"model={model}", "model.fused_lora=true"]), get_task("sst2"))
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)  # LoRA B starts at zero; make LoRA matter
    fused.load_state_dict(plain.state_dict())
    return plain, fused


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta"])
def test_fused_update_gives_the_same_logits_and_gradients(model):
    plain, fused = _pair(model)
    variants = [v for m in fused.modules() for v in getattr(m, "lora_variant", {}).values()]
    assert variants and all(isinstance(v, FusedAddVariant) for v in variants)
    assert list(fused.state_dict()) == list(plain.state_dict())
    ids = torch.randint(5, 500, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    outputs = []
    for net in (plain, fused):
        net.eval()
        out = net(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1]))
        out.loss.backward()
        outputs.append((out.logits, {n: p.grad for n, p in net.named_parameters() if p.requires_grad}))
    (logits_plain, grads_plain), (logits_fused, grads_fused) = outputs
    torch.testing.assert_close(logits_fused, logits_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_fused[name], grad)


def test_merging_a_fused_model_gives_peft_merged_weights():
    plain, fused = _pair("tiny_roberta")
    merged_plain = plain.merge_and_unload().state_dict()
    merged_fused = fused.merge_and_unload().state_dict()
    assert list(merged_fused) == list(merged_plain)
    for name, weight in merged_plain.items():
        torch.testing.assert_close(merged_fused[name], weight)
