"""model.fused_lora: the same logits, gradients and merged weights as peft's own LoRA forward."""

from __future__ import annotations

import pytest
import torch

from glue_lora.model.fused_lora import FusedAddVariant
from tests.helpers.models import eval_logits_and_grads, flag_twins


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta"])
def test_fused_update_gives_the_same_logits_and_gradients(model):
    plain, fused = flag_twins(model, "fused_lora")
    variants = [v for m in fused.modules() for v in getattr(m, "lora_variant", {}).values()]
    assert variants and all(isinstance(v, FusedAddVariant) for v in variants)
    assert list(fused.state_dict()) == list(plain.state_dict())
    ids = torch.randint(5, 500, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    labels = torch.tensor([0, 1, 1])
    logits_plain, grads_plain = eval_logits_and_grads(plain, ids, mask, labels)
    logits_fused, grads_fused = eval_logits_and_grads(fused, ids, mask, labels)
    torch.testing.assert_close(logits_fused, logits_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_fused[name], grad)


def test_merging_a_fused_model_gives_peft_merged_weights():
    plain, fused = flag_twins("tiny_roberta", "fused_lora")
    merged_plain = plain.merge_and_unload().state_dict()
    merged_fused = fused.merge_and_unload().state_dict()
    assert list(merged_fused) == list(merged_plain)
    for name, weight in merged_plain.items():
        torch.testing.assert_close(merged_fused[name], weight)
