"""Layer-wise learning rates (lr_tiers): param groups per tier for BERT, RoBERTa and DeBERTa-v2."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from glue_lora.data.tasks import get_task
from glue_lora.training.param_groups import param_groups, parameter_location, tier_table
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_train, model_of

# (model config, overrides, encoder layers, head parameters trained with LoRA)
ARCHITECTURES = {
    "roberta": (["model=tiny_roberta"], 2, 32 * 32 + 32 + 32 * 2 + 2),  # classifier dense + out_proj
    "deberta": (["model=tiny_deberta"], 2, 32 * 32 + 32 + 32 * 2 + 2),  # pooler dense + classifier
    "bert": (["model=minilm", "model.pretrained=false"], 6, 384 * 2 + 2),  # classifier only
}


def tiers_for(n_layers: int) -> dict:
    half = n_layers // 2
    return {
        "emb": {"layers": "embeddings", "lr": 1.0e-6},
        "low": {"layers": f"0-{half - 1}", "lr": 1.0e-5},
        "high": {"layers": list(range(half, n_layers)), "lr": 3.0e-4, "weight_decay": 0.05},
        "head": {"layers": "head", "lr": 1.0e-3},
    }


def meta_model(overrides: list[str]):
    cfg = compose_train([*overrides, "task=rte"])
    with torch.device("meta"):
        model = model_of(cfg, get_task("rte"), device="meta")
    return cfg, model


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_one_group_per_tier_with_its_learning_rate(arch, lora):
    overrides, n_layers, head_params = ARCHITECTURES[arch]
    cfg, model = meta_model([*overrides, *([] if lora else ["lora=none"])])
    tiers = tiers_for(n_layers)
    optimizer = instantiate(cfg.optimizer)(param_groups(model, tiers))
    names = {id(p): n for n, p in model.named_parameters()}
    expected_tier = {-1: "emb", "head": "head"} | {
        i: "low" if i < n_layers // 2 else "high" for i in range(n_layers)
    }

    seen = 0
    for group in optimizer.param_groups:
        tier, _, kind = group["name"].partition("-")
        assert group["lr"] == tiers[tier]["lr"]
        for p in group["params"]:
            name = names[id(p)]
            assert p.requires_grad
            assert expected_tier[parameter_location(name)] == tier, name
            is_no_decay = "bias" in name or "LayerNorm" in name or "layer_norm" in name
            assert is_no_decay == (kind == "no_decay"), name
        expected_decay = (
            0.0 if kind == "no_decay" else tiers[tier].get("weight_decay", cfg.optimizer.weight_decay)
        )
        assert group["weight_decay"] == expected_decay
        seen += len(group["params"])
    assert seen == sum(p.requires_grad for p in model.parameters())

    groups = {g["name"]: sum(p.numel() for p in g["params"]) for g in optimizer.param_groups}
    assert groups["head"] + groups.get("head-no_decay", 0) == head_params or not lora
    if lora:
        # LoRA weights are the only trainable parameters in the layers; embeddings are frozen.
        assert "emb" not in groups and {"low", "high"} <= set(groups)
        r, hidden = cfg.lora.r, model.config.hidden_size
        assert groups["low"] == (n_layers // 2) * 2 * (2 * r * hidden)  # query + value: A and B
    else:
        # Embeddings and their norm; DeBERTa's shared relative embeddings, their norm and its conv.
        below_layers = sum(
            p.numel()
            for n, p in model.named_parameters()
            if ".embeddings." in n or (".encoder." in n and ".encoder.layer." not in n)
        )
        assert groups["emb"] + groups["emb-no_decay"] == below_layers
        assert groups["emb"] >= model.get_input_embeddings().weight.numel()
    table = tier_table(model, tiers, cfg.optimizer.lr)
    assert table.splitlines()[0].split() == ["tier", "layers", "parameters", "lr"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["emb", "low", "high", "head"]


def test_deberta_relative_embeddings_count_as_embeddings():
    assert parameter_location("deberta.encoder.rel_embeddings.weight") == -1
    assert parameter_location("deberta.encoder.layer.1.attention.self.query_proj.weight") == 1
    assert (
        parameter_location(
            "base_model.model.roberta.encoder.layer.11.attention.self.query.lora_A.default.weight"
        )
        == 11
    )
    assert parameter_location("base_model.model.classifier.modules_to_save.default.dense.weight") == "head"
    assert parameter_location("bert.pooler.dense.weight") == "head"
    assert parameter_location("roberta.embeddings.word_embeddings.weight") == -1


def test_untiered_parameters_train_at_optimizer_lr():
    cfg, model = meta_model(["model=tiny_roberta", "lora=none"])
    optimizer = instantiate(cfg.optimizer)(param_groups(model, {"top": {"layers": 1, "lr": 1e-3}}))
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {
        "top": 1e-3,
        "top-no_decay": 1e-3,
        "rest": cfg.optimizer.lr,
        "rest-no_decay": cfg.optimizer.lr,
    }
    rest_row = tier_table(model, {"top": {"layers": 1, "lr": 1e-3}}, cfg.optimizer.lr).splitlines()[-1]
    assert rest_row.split()[:2] == ["rest", "embeddings,0,head"]


def test_without_tiers_the_groups_are_decay_and_no_decay():
    _, model = meta_model(["model=tiny_roberta"])
    groups = param_groups(model, None)
    assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0 and "lr" not in groups[0]


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ({"a": {"layers": "0-5", "lr": 1e-4}}, "has layers 0..1"),
        ({"a": {"layers": "0-1", "lr": 1e-4}, "b": {"layers": 1, "lr": 1e-3}}, "both claim layer 1"),
        ({"a": {"layers": "3-1", "lr": 1e-4}}, "empty range"),
        ({"a": {"layers": "top", "lr": 1e-4}}, "not understood"),
        ({"a": {"layers": 0, "lr": -1.0}}, "must be positive"),
        ({"a": {"layers": 0, "learning_rate": 1e-4}}, "unknown key"),
    ],
)
def test_bad_tiers_are_config_errors(tiers, message):
    _, model = meta_model(["model=tiny_roberta"])
    with pytest.raises(ConfigError, match=message):
        param_groups(model, tiers)


def test_tiered12_config_composes_for_roberta_base():
    cfg, model = meta_model(
        ["model=roberta_base", "model.pretrained=false", "lr_tiers=tiered12", "lora=none"]
    )
    groups = param_groups(model, cfg.lr_tiers)
    lrs = {g["name"]: g["lr"] for g in groups if "lr" in g}
    assert lrs["bottom"] == 1e-5 and lrs["middle"] == 3e-4 and lrs["top"] == 5e-4 and lrs["head"] == 1e-3
    assert "rest" in {g["name"] for g in groups}  # the embeddings: no tier in tiered12
