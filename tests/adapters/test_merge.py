"""glue-lora merge: a plain transformers model that predicts what the adapter predicts."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from glue_lora.adapters.loading import load_model
from glue_lora.adapters.merge import compare_speed
from glue_lora.commands import main as glue_lora
from tests.helpers.adapters import make_adapter, tokens


@pytest.mark.parametrize(("model", "task"), [("tiny_roberta", "rte"), ("tiny_deberta", "stsb")])
def test_merged_model_gives_the_adapters_logits(model, task, tmp_path):
    run_dir = make_adapter(tmp_path / "run", task, model=model)
    assert glue_lora(["merge", str(run_dir), str(tmp_path / "merged")]) == 0

    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    assert type(merged).__module__.startswith("transformers.")  # no peft wrapper, no LoRA layers
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    adapter, _, info = load_model(run_dir)
    batch = tokens()
    with torch.inference_mode():
        expected, got = adapter(**batch).logits, merged(**batch).logits
    assert (got - expected).abs().max().item() < 1e-4
    # LoRA changed the weights (the test would pass trivially if B were zero).
    base, _, _ = load_model(run_dir)
    with torch.inference_mode(), base.disable_adapter():
        assert (base(**batch).logits - expected).abs().max().item() > 1e-3

    if info.label_names:
        assert merged.config.id2label == dict(enumerate(info.label_names))
    AutoTokenizer.from_pretrained(tmp_path / "merged")  # the tokenizer travels with the model
    record = json.loads((tmp_path / "merged" / "glue_lora.json").read_text())
    assert record["lora"] is None and record["task"] == task
    # eval.py's loader takes the merged directory as it is.
    reloaded, _, _ = load_model(tmp_path / "merged")
    with torch.inference_mode():
        assert torch.equal(reloaded(**batch).logits, got)


def test_merge_refuses_to_overwrite_and_to_merge_twice(tmp_path, capsys):
    run_dir = make_adapter(tmp_path / "run", "sst2")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    assert glue_lora(["merge", str(run_dir), str(tmp_path / "taken")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "x"
    assert glue_lora(["merge", str(run_dir), str(tmp_path / "merged")]) == 0
    assert glue_lora(["merge", str(tmp_path / "merged"), str(tmp_path / "again")]) == 2
    assert "nothing to merge" in capsys.readouterr().err


def test_compare_speed_reports_both(tmp_path):
    run_dir = make_adapter(tmp_path / "run", "sst2")
    unmerged, _, _ = load_model(run_dir)
    merged, _, _ = load_model(run_dir)
    figures = compare_speed(unmerged, merged.merge_and_unload(), batch_size=4, seq_len=16, steps=2)
    assert figures["unmerged_ms"] > 0 and figures["merged_ms"] > 0 and figures["speedup"] > 0
