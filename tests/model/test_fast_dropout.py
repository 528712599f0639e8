"""fast_dropout: torch's dropout semantics (keep rate, scale, gradient, seeding) with a cheaper mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glue_lora.model.fast_dropout import (
    ATTENTION_NAME,
    FastDropout,
    fast_dropout,
    keep_mask,
    sdpa_with_fast_dropout,
)
from tests.helpers.models import flag_twins


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_p(p):
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([1000, 1000]), p)
    assert keep.dtype == torch.bool
    # a million draws: the standard error of the rate is below 5e-4
    assert abs(keep.float().mean().item() - (1 - p)) < 2.5e-3


def test_values_are_zero_or_scaled_and_the_gradient_uses_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)
    out = fast_dropout(x, 0.2)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.8)
    assert 0.7 < kept.float().mean().item() < 0.9
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x.grad, kept.float() / 0.8)


def test_seeded_like_every_other_draw():
    x = torch.ones(8, 100)
    torch.manual_seed(3)
    first = fast_dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.3), first)
    assert not torch.equal(fast_dropout(x, 0.3), first)


def test_eval_mode_and_p_zero_leave_the_input_alone():
    x = torch.randn(4, 5)
    layer = FastDropout(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(fast_dropout(x, 0.0), x)


def test_attention_matches_the_plain_formula_with_the_same_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    allowed = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    allowed[1, ..., 3:] = False  # the second example has two padding positions
    module = nn.Module().train()
    torch.manual_seed(7)
    out, _ = sdpa_with_fast_dropout(module, q, k, v, allowed, dropout=0.25)
    torch.manual_seed(7)
    keep = keep_mask(torch.Size([2, 3, 5, 5]), 0.25)
    scores = (q @ k.transpose(2, 3)) / 2.0 + torch.where(allowed, 0.0, float("-inf"))
    expected = (torch.softmax(scores, -1) * keep / 0.75) @ v
    torch.testing.assert_close(out, expected.transpose(1, 2))


def test_attention_without_dropout_is_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    module = nn.Module().eval()
    module.is_causal = False  # as encoders' attention modules say
    out, _ = sdpa_with_fast_dropout(module, q, k, v, None, dropout=0.0)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, expected.transpose(1, 2))


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta"])
def test_model_flag_swaps_every_dropout_and_changes_no_weight(model):
    plain, fast = flag_twins(model, "fast_dropout")
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert any(isinstance(m, FastDropout) for m in fast.modules())
    ids = torch.randint(5, 500, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0
    plain.eval()
    fast.eval()
    torch.testing.assert_close(
        fast(input_ids=ids, attention_mask=mask).logits, plain(input_ids=ids, attention_mask=mask).logits
    )
    if model == "tiny_roberta":  # DeBERTa-v2 computes attention itself, with its dropout module
        assert fast.get_base_model().config._attn_implementation == ATTENTION_NAME
