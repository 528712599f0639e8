"""Model switches of the performance work: attention kernel and torch.compile."""

from __future__ import annotations

import pytest
import torch

from glue_lora.data.tasks import get_task
from glue_lora.train import run
from tests.helpers.models import eval_logits_and_grads, flag_twins
from tests.helpers.runs import compose_tiny_run, compose_train, model_of


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_attention_implementation_is_passed_through(kernel):
    model = model_of(
        compose_train(
            ["model=tiny_roberta", f"model.attn_implementation={kernel}", "model.fast_dropout=false"]
        ),
        get_task("sst2"),
    )
    assert model.get_base_model().config._attn_implementation == kernel


@pytest.mark.slow
def test_compiled_model_trains_and_saves(glue_fixtures, token_cache, tmp_path):
    cfg = compose_tiny_run(
        glue_fixtures, token_cache, tmp_path, ["task=sst2", "model.compile=true", "trainer.max_epochs=1"]
    )
    results = run(cfg)
    assert 0.0 <= results["score"] <= 1.0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta", "minilm"])
def test_last_layer_cls_only_changes_nothing_but_the_work(model):
    """Same logits and gradients with and without the shortcut, on a padded batch."""
    full, short = flag_twins(model, "last_layer_cls_only")
    assert list(short.state_dict()) == list(full.state_dict())  # weight names untouched
    ids = torch.randint(5, 500, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    labels = torch.tensor([0, 1, 1, 0])
    logits_full, grads_full = eval_logits_and_grads(full, ids, mask, labels)
    logits_short, grads_short = eval_logits_and_grads(short, ids, mask, labels)
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
