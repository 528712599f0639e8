"""glue_lora.Predictor: one base in memory, adapters switched per call, same outputs as alone."""

from __future__ import annotations

import pytest
import torch

import glue_lora
from glue_lora.adapters.loading import build_base, load_model
from glue_lora.utils.errors import ConfigError
from tests.helpers.adapters import make_adapter

SENTENCES = ["a good film", "bad plot and dull actor", "fine"]
PAIRS = [("a good film", "the film is good"), ("dark story", "happy story"), ("nice", "poor")]
TEXTS = {"sst2": SENTENCES, "rte": PAIRS, "stsb": PAIRS, "mnli": PAIRS}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("serving")
    return {task: make_adapter(root / task, task) for task in ("sst2", "rte", "stsb", "mnli")}


@pytest.fixture(scope="module")
def predictor(adapters):
    return glue_lora.Predictor(None, adapters=adapters, device="cpu")


def alone(adapter_dir, texts) -> torch.Tensor:
    """The logits of the adapter loaded by itself (eval.py's loader), tokenized the same way."""
    model, tokenizer, info = load_model(adapter_dir)
    columns = [list(c) for c in zip(*[[t] if isinstance(t, str) else t for t in texts], strict=True)]
    batch = tokenizer(
        *columns, truncation=True, max_length=info.max_length, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        return model(**batch).logits


def test_switching_gives_what_each_adapter_gives_alone(predictor, adapters):
    expected = {task: alone(path, TEXTS[task]) for task, path in adapters.items()}
    for task in ["sst2", "rte", "sst2", "stsb", "mnli", "rte", "stsb", "sst2"]:  # switch back and forth
        got = predictor.logits(task, TEXTS[task])
        torch.testing.assert_close(got, expected[task], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(expected["sst2"], expected["rte"])  # the adapters really differ


def test_predictions_carry_labels_and_scores(predictor):
    rte = predictor.predict("rte", PAIRS)
    assert len(rte) == 3 and all(p.label in ("entailment", "not_entailment") for p in rte)
    assert all(p.score == max(p.scores.values()) for p in rte)
    assert all(abs(sum(p.scores.values()) - 1.0) < 1e-5 for p in rte)
    stsb = predictor.predict("stsb", PAIRS)
    assert all(isinstance(p.label, float) and p.score == p.label and p.scores == {} for p in stsb)
    assert predictor.predict("sst2", "a single sentence")[0].label in ("0", "1")


def test_the_base_weights_are_held_once(predictor, adapters):
    info = predictor.infos["sst2"]
    n_base = sum(p.numel() for n, p in build_base(info).named_parameters() if not n.startswith("classifier."))
    predictor.predict("sst2", SENTENCES)  # sst2's head is plugged in; no other head module is held
    held = {p.data_ptr(): p.numel() for p in [*predictor.model.parameters(), *predictor.heads.parameters()]}
    n_lora = sum(p.numel() for n, p in predictor.model.named_parameters() if "lora_" in n)
    n_heads = sum(p.numel() for p in predictor.heads.parameters())
    assert n_lora > 0 and n_heads > 0
    # One base, plus each adapter's LoRA matrices and head modules: nothing is held twice.
    assert sum(held.values()) == n_base + n_lora + n_heads

    query = predictor.model.get_base_model().roberta.encoder.layer[0].attention.self.query
    pointer = query.base_layer.weight.data_ptr()
    for task in adapters:
        predictor.predict(task, TEXTS[task])
        assert query.base_layer.weight.data_ptr() == pointer
    assert set(query.lora_A) == set(adapters)  # one LoRA per task on the one shared layer


def test_misuse_is_refused(predictor, adapters, tmp_path):
    with pytest.raises(ConfigError, match="serves"):
        predictor.predict("cola", SENTENCES)
    with pytest.raises(ConfigError, match="pair"):
        predictor.predict("rte", SENTENCES)
    other_base = make_adapter(tmp_path / "deberta", "sst2", model="tiny_deberta")
    with pytest.raises(ConfigError, match="different base"):
        glue_lora.Predictor(None, adapters={"sst2": adapters["sst2"], "other": other_base})


def test_a_base_directory_replaces_the_recorded_base(predictor, adapters, tmp_path):
    info = predictor.infos["sst2"]
    build_base(info).save_pretrained(tmp_path / "base")  # the weights the adapters were trained on
    predictor.tokenizer.save_pretrained(tmp_path / "base")
    from_dir = glue_lora.Predictor(str(tmp_path / "base"), adapters={"sst2": adapters["sst2"]}, device="cpu")
    torch.testing.assert_close(from_dir.logits("sst2", SENTENCES), predictor.logits("sst2", SENTENCES))
