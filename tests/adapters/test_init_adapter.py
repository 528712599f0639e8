"""Starting from an MNLI adapter: LoRA loaded, a head of another label count dropped, the log exact."""

from __future__ import annotations

import logging

import pytest
import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from glue_lora.adapters.init_adapter import load_init_adapter
from glue_lora.adapters.record import PEFT_PREFIX
from glue_lora.data.tasks import get_task
from glue_lora.train import run, set_determinism
from glue_lora.utils.errors import ConfigError
from tests.helpers.adapters import make_adapter
from tests.helpers.runs import TINY, compose_train, init_adapter_of, model_of


@pytest.fixture(scope="module")
def mnli_adapters(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mnli")
    return {m: make_adapter(root / m, "mnli", model=m) for m in ("tiny_roberta", "tiny_deberta")}


def start(task: str, model: str, init: str, seed: int = 1):
    """Build the model of a run and load ``init`` into it, as train.run does."""
    cfg = compose_train([f"model={model}", f"task={task}", f"seed={seed}", f"init_adapter={init}"])
    spec = get_task(task)
    prepared = init_adapter_of(cfg)
    set_determinism(cfg.seed, False)
    model_ = model_of(cfg, spec)
    fresh = {k: v.clone() for k, v in get_peft_model_state_dict(model_).items()}
    report = load_init_adapter(model_, prepared, spec, list(cfg.model.trained_in_full))
    return model_, fresh, report


def loaded_state(model) -> dict[str, torch.Tensor]:
    return get_peft_model_state_dict(model)


@pytest.mark.parametrize(
    ("model", "task", "dropped", "kept_head"),
    [
        ("tiny_roberta", "rte", ["classifier"], []),
        ("tiny_roberta", "stsb", ["classifier"], []),
        ("tiny_deberta", "mrpc", ["classifier"], ["pooler"]),
    ],
)
def test_other_label_count_drops_the_head(model, task, dropped, kept_head, mnli_adapters, caplog):
    saved = load_file(mnli_adapters[model] / "adapter" / "adapter_model.safetensors")
    with caplog.at_level(logging.INFO, logger="glue_lora"):
        peft_model, fresh, report = start(task, model, str(mnli_adapters[model]))
    state = loaded_state(peft_model)
    lora_keys = [k for k in saved if "lora_" in k]
    assert lora_keys and all(torch.equal(state[k], saved[k]) for k in lora_keys)
    for head in kept_head:  # DeBERTa's pooler does not depend on the labels: kept
        keys = [k for k in saved if k.startswith(f"{PEFT_PREFIX}{head}.")]
        assert keys and all(torch.equal(state[k], saved[k]) for k in keys)
    for head in dropped:  # sized for 3 labels: dropped whole, this run's fresh initialisation stays
        keys = [k for k in state if k.startswith(f"{PEFT_PREFIX}{head}.")]
        assert keys and all(torch.equal(state[k], fresh[k]) for k in keys)
        assert all(not torch.equal(state[k], saved[k]) for k in keys if saved[k].shape == state[k].shape)
    assert {k.split(".")[0] for k in report["dropped"]} == set(dropped)
    assert sorted(report["loaded"]) == sorted(
        k.removeprefix(PEFT_PREFIX) for k in saved if k.removeprefix(PEFT_PREFIX) not in report["dropped"]
    )
    assert "dropped head classifier" in caplog.text and "3 label(s), re-initialised" in caplog.text
    assert f"loaded {len(lora_keys)} LoRA tensors" in caplog.text
    assert "layer.{0-1}" in caplog.text


def test_same_label_count_keeps_the_head(mnli_adapters, caplog):
    saved = load_file(mnli_adapters["tiny_roberta"] / "adapter" / "adapter_model.safetensors")
    with caplog.at_level(logging.INFO, logger="glue_lora"):
        peft_model, _, report = start("mnli", "tiny_roberta", str(mnli_adapters["tiny_roberta"]))
    state = loaded_state(peft_model)
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    assert report["dropped"] == []
    assert "dropped" not in caplog.text


def test_a_training_run_starts_from_the_adapter(mnli_adapters, glue_fixtures, token_cache, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            "task=rte",
            "trainer.max_epochs=1",
            "optimizer.lr=1e-9",  # the LoRA weights barely move: they must be the MNLI ones
            f"init_adapter={mnli_adapters['tiny_roberta']}",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
        ],
        tmp_path,
    )
    run(cfg)
    mnli = load_file(mnli_adapters["tiny_roberta"] / "adapter" / "adapter_model.safetensors")
    rte = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    for key in (k for k in mnli if "lora_" in k):
        torch.testing.assert_close(rte[key], mnli[key], atol=1e-5, rtol=0)
    assert rte[f"{PEFT_PREFIX}classifier.out_proj.weight"].shape[0] == 2


def test_missing_adapter_says_how_to_train_one_or_opt_out(tmp_path):
    cfg = compose_train(["model=tiny_roberta", "task=rte", f"init_adapter={tmp_path}/nowhere"])
    with pytest.raises(ConfigError, match="task=mnli") as err:
        init_adapter_of(cfg)
    assert "init_adapter=null" in str(err.value)


def test_init_adapter_needs_lora_and_the_same_model(mnli_adapters):
    path = mnli_adapters["tiny_roberta"]
    with pytest.raises(ConfigError, match="lora=none"):
        init_adapter_of(
            compose_train(["model=tiny_roberta", "task=rte", "lora=none", f"init_adapter={path}"])
        )
    with pytest.raises(ConfigError, match="model=tiny_roberta"):
        init_adapter_of(compose_train(["model=tiny_deberta", "task=rte", f"init_adapter={path}"]))
    with pytest.raises(ConfigError, match=r"lora\.r=8"):
        start_cfg = ["lora.r=4", "lora.alpha=8"]
        cfg = compose_train(["model=tiny_roberta", "task=rte", f"init_adapter={path}", *start_cfg])
        model = model_of(cfg, get_task("rte"))
        load_init_adapter(model, init_adapter_of(cfg), get_task("rte"), ["classifier"])
