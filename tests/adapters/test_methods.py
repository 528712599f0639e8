"""Every method's adapter: recorded, saved small, reloaded, evaluated to the run's dev metrics, merged."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from glue_lora.adapters.loading import load_model
from glue_lora.adapters.merge import merge_adapter
from glue_lora.adapters.record import ADAPTER_WEIGHTS, TRAINED_WEIGHTS, read_adapter
from glue_lora.evaluate import run as evaluate
from glue_lora.train import run as train
from glue_lora.utils.artifacts import dir_size_mb
from glue_lora.utils.errors import ConfigError
from tests.helpers.adapters import make_adapter, tokens
from tests.helpers.runs import TINY, compose_tiny_eval, compose_train

# Small enough for the tiny RoBERTa (hidden size 32): VeRA's rank, FourierFT's frequencies.
SMALL = {
    "vera": ["method.peft_options.r=16"],
    "fourierft": ["method.peft_options.n_frequency=64"],
    "adalora": ["method.peft_options.init_r=4", "lora.r=2"],
}
EVALUATED = [
    "lora",
    "dora",
    "pissa",
    "olora",
    "eva",
    "corda",
    "lora_ga",
    "adalora",
    "vera",
    "ia3",
    "fourierft",
    "bitfit",
    "head_only",
]
# Starts computed from train batches: their adapters come from a real (tiny) run.
DATA_DRIVEN = ["eva", "corda", "lora_ga"]


def _train(method, tmp_path, glue_fixtures, token_cache) -> dict:
    overrides = [
        *TINY,
        "trainer.max_epochs=1",
        "task=rte",
        f"method={method}",
        *SMALL.get(method, []),
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
    ]
    return train(compose_train(overrides, tmp_path / "run"))


@pytest.mark.parametrize("method", EVALUATED)
def test_eval_of_a_saved_run_reproduces_its_dev_metrics(method, glue_fixtures, token_cache, tmp_path):
    results = _train(method, tmp_path, glue_fixtures, token_cache)
    assert read_adapter(tmp_path / "run").method.name == method
    assert results["method"]["name"] == method
    cfg = compose_tiny_eval(tmp_path / "run", glue_fixtures, token_cache, tmp_path / "eval")
    assert evaluate(cfg)["dev"] == results["dev"]  # exact


def test_a_bitfit_adapter_holds_only_the_trained_tensors(tmp_path):
    run_dir = make_adapter(tmp_path / "run", "sst2", overrides=["method=bitfit"])
    adapter = run_dir / "adapter"
    assert {p.name for p in adapter.glob("*.safetensors")} == {TRAINED_WEIGHTS}
    model, _, info = load_model(run_dir)
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    assert dir_size_mb(adapter) < model_mb / 20
    assert info.method.trains == "biases"
    # the loaded biases are the saved (perturbed) ones, not the base's
    from safetensors.torch import load_file

    saved = load_file(adapter / TRAINED_WEIGHTS)
    params = dict(model.named_parameters())
    assert saved and all(name.endswith(".bias") or "classifier" in name for name in saved)
    assert all(torch.equal(params[name], tensor) for name, tensor in saved.items())


def test_a_record_without_a_method_reads_as_lora_or_full(tmp_path):
    run_dir = make_adapter(tmp_path / "run", "sst2")
    path = run_dir / "adapter" / "glue_lora.json"
    record = json.loads(path.read_text())
    assert record["method"]["name"] == "lora"
    del record["method"]
    path.write_text(json.dumps(record))
    assert read_adapter(run_dir).method.name == "lora"
    path.write_text(json.dumps({**record, "lora": None}))
    assert read_adapter(run_dir).method.is_full


# make_adapter builds them without data; the data-driven starts are merged from real runs below.
MERGED = ["rslora", *(m for m in EVALUATED if m not in DATA_DRIVEN)]


@pytest.mark.parametrize("method", MERGED)
def test_the_merged_model_gives_the_adapters_logits(method, tmp_path):
    run_dir = make_adapter(tmp_path / "run", "rte", overrides=[f"method={method}", *SMALL.get(method, [])])
    merge_adapter(run_dir, tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    assert type(merged).__module__.startswith("transformers.")
    adapter, _, _ = load_model(run_dir)
    batch = tokens()
    with torch.inference_mode():
        expected, got = adapter(**batch).logits, merged(**batch).logits
    assert (got - expected).abs().max().item() < 1e-4
    merged_info = read_adapter(tmp_path / "merged")
    assert merged_info.method.is_full
    record = json.loads((tmp_path / "merged" / "glue_lora.json").read_text())
    assert record["merged_method"]["name"] == method


@pytest.mark.parametrize("method", DATA_DRIVEN)
def test_a_data_driven_adapter_merges_into_the_models_logits(method, glue_fixtures, token_cache, tmp_path):
    _train(method, tmp_path, glue_fixtures, token_cache)
    adapter_files = {p.name for p in (tmp_path / "run" / "adapter").glob("*.safetensors")}
    # CorDA and LoRA-GA keep B0 A0 to rebuild the residual base; EVA's base is the untouched one.
    assert ("initial_adapter.safetensors" in adapter_files) == (method != "eva")
    merge_adapter(tmp_path / "run", tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    adapter, _, _ = load_model(tmp_path / "run")
    batch = tokens()
    with torch.inference_mode():
        assert (merged(**batch).logits - adapter(**batch).logits).abs().max().item() < 1e-4


def test_an_adalora_adapter_cut_to_its_rank_pattern_reloads_exactly(tmp_path):
    """peft saves AdaLoRA cut to its rank pattern; a rank outside it that still holds a value is kept."""
    from glue_lora.adapters.save import save_adapter
    from glue_lora.data.tasks import get_task
    from glue_lora.train import set_determinism
    from tests.helpers.runs import model_of, record_of

    cfg = compose_train(["model=tiny_roberta", "task=rte", "method=adalora", *SMALL["adalora"]], tmp_path)
    spec = get_task("rte")
    set_determinism(cfg.seed, False)
    model = model_of(cfg, spec)
    generator = torch.Generator().manual_seed(3)
    pattern = {}
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=generator))
        for name, module in model.get_base_model().named_modules():
            if hasattr(module, "lora_E") and "default" in module.lora_E:
                if len(pattern) % 2:  # pruned ranks zeroed, as AdaLoRA's mask leaves them
                    module.lora_E["default"][[1, 3]] = 0.0
                pattern[f"{name}.lora_E.default"] = [True, False, True, False]
    model.peft_config["default"].rank_pattern = pattern
    save_adapter(model, tmp_path / "adapter", record_of(cfg, spec), spec)
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["rank_pattern"]
    assert any(sum(v) == 2 for v in saved.values()) and any(sum(v) == 4 for v in saved.values())
    assert model.peft_config["default"].rank_pattern == pattern  # restored after saving
    loaded, _, _ = load_model(tmp_path / "adapter")
    model.eval()
    batch = tokens()
    with torch.inference_mode():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)
    assert (tmp_path / "adapter" / ADAPTER_WEIGHTS).is_file()


def test_merging_a_full_model_says_there_is_nothing_to_merge(tmp_path):
    run_dir = make_adapter(tmp_path / "run", "sst2", overrides=["method=full"])
    with pytest.raises(ConfigError, match="nothing to merge"):
        merge_adapter(run_dir, tmp_path / "merged")


def test_a_predictor_serves_lora_family_adapters_and_refuses_others(tmp_path):
    from glue_lora.adapters.predictor import Predictor

    runs = {
        method: make_adapter(tmp_path / method, "rte", overrides=[f"method={method}", *SMALL.get(method, [])])
        for method in ("rslora", "dora", "vera")
    }
    predictor = Predictor(None, adapters={"first": runs["rslora"], "second": runs["dora"]}, device="cpu")
    pairs = [("a good film", "the film is good"), ("dark story", "happy story")]
    for name, method in (("first", "rslora"), ("second", "dora")):
        model, tokenizer, _ = load_model(runs[method])
        batch = tokenizer(
            *map(list, zip(*pairs, strict=True)), truncation=True, padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            assert torch.allclose(predictor.logits(name, pairs), model(**batch).logits, atol=1e-5)
    with pytest.raises(ConfigError, match=r"method=vera.*LoRA, rsLoRA, DoRA"):
        Predictor(None, adapters={"first": runs["rslora"], "third": runs["vera"]}, device="cpu")


def test_init_adapter_refuses_an_adapter_of_another_method(tmp_path):
    from tests.helpers.runs import init_adapter_of

    run_dir = make_adapter(tmp_path / "dora", "mnli", overrides=["method=dora"])
    with pytest.raises(ConfigError, match="method=dora, not plain LoRA"):
        init_adapter_of(compose_train(["model=tiny_roberta", "task=rte", f"init_adapter={run_dir}"]))
