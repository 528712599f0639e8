"""Model switches of the performance work: attention kernel and torch.compile."""

from __future__ import annotations

import pytest
import torch

from glue_lora.tasks import get_task
from glue_lora.train import build_model, run
from tests.conftest import TINY, compose_train


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_attention_implementation_is_passed_through(kernel):
    model = build_model(
        compose_train(
            ["model=tiny_roberta", f"model.attn_implementation={kernel}", "model.fast_dropout=false"]
        ),
        get_task("sst2"),
    )
    assert model.get_base_model().config._attn_implementation == kernel


@pytest.mark.slow
def test_compiled_model_trains_and_saves(glue_fixtures, token_cache, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            "task=sst2",
            "model.compile=true",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "trainer.max_epochs=1",
        ],
        tmp_path,
    )
    results = run(cfg)
    assert 0.0 <= results["score"] <= 1.0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta", "minilm"])
def test_last_layer_cls_only_changes_nothing_but_the_work(model):
    """Same logits and gradients with and without the shortcut, on a padded batch."""
    torch.manual_seed(0)
    full = build_model(compose_train([f"model={model}", "model.last_layer_cls_only=false"]), get_task("sst2"))
    short = build_model(compose_train([f"model={model}", "model.last_layer_cls_only=true"]), get_task("sst2"))
    with torch.no_grad():
        for name, p in full.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)  # LoRA B starts at zero; make LoRA matter
    short.load_state_dict(full.state_dict())
    assert list(short.state_dict()) == list(full.state_dict())  # weight names untouched
    ids = torch.randint(5, 500, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    outputs = []
    for net in (full, short):
        net.eval()  # no dropout: the two runs must agree exactly
        out = net(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1, 0]))
        out.loss.backward()
        outputs.append((out.logits, {n: p.grad for n, p in net.named_parameters() if p.requires_grad}))
    (logits_full, grads_full), (logits_short, grads_short) = outputs
    torch.testing.assert_close(logits_short, logits_full, atol=1e-5, rtol=1e-4)
    for name, grad in grads_full.items():
        torch.testing.assert_close(grads_short[name], grad, atol=1e-5, rtol=1e-4)
    hidden = short.get_base_model().base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert hidden.shape[1] == 1  # the last layer ran for [CLS] only


def test_progress_bar_auto_draws_only_on_a_terminal(monkeypatch):
    from glue_lora.train import progress_bar_enabled

    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert progress_bar_enabled("auto") is False
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert progress_bar_enabled("auto") is True
    assert progress_bar_enabled(False) is False
