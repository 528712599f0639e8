"""LoRA injection: what is trained, parameter counts, adapter round trip, bad targets."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from glue_lora.data.tasks import get_task
from glue_lora.model.backbone import build_backbone
from glue_lora.model.layers import layer_index, num_layers
from glue_lora.model.lora import apply_lora, count_parameters, validate_lora_config
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_train, model_of

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": None, "layers": None, "bias": "none"}


def tiny(model: str = "tiny_roberta", num_labels: int = 2):
    cfg = compose_train([f"model={model}"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(0)
    return build_backbone(model_cfg, num_labels), model_cfg


@pytest.mark.parametrize("model", ["tiny_roberta", "tiny_deberta"])
def test_only_lora_and_head_require_grad(model):
    backbone, model_cfg = tiny(model)
    peft_model = apply_lora(backbone, LORA, model_cfg["lora_targets"], model_cfg["trained_in_full"])
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    heads = tuple(model_cfg["trained_in_full"])
    assert trainable
    assert all("lora_" in n or any(f".{h}." in n or n.startswith(h) for h in heads) for n in trainable)
    assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    if model == "tiny_deberta":
        assert any("pooler" in n for n in trainable)
    counts = count_parameters(peft_model, heads)
    assert counts.trainable == counts.lora + counts.head
    n_base = sum(
        p.numel() for n, p in peft_model.named_parameters() if "lora_" not in n and "modules_to_save" not in n
    )
    assert counts.total == n_base + counts.lora


def test_full_fine_tuning_trains_every_weight():
    backbone, model_cfg = tiny()
    model = apply_lora(backbone, None, model_cfg["lora_targets"], model_cfg["trained_in_full"])
    assert all(p.requires_grad for p in model.parameters())


def test_adapter_round_trips_through_peft_with_equal_logits(tmp_path):
    from peft import PeftModel

    backbone, model_cfg = tiny()
    model = apply_lora(backbone, LORA, model_cfg["lora_targets"], model_cfg["trained_in_full"])
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter
        for _name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    inputs = {
        "input_ids": torch.randint(5, 1000, (3, 12)),
        "attention_mask": torch.ones(3, 12, dtype=torch.long),
    }
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path)

    fresh, _ = tiny()  # same seed: same frozen weights, a new random head
    reloaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    torch.testing.assert_close(reloaded(**inputs).logits, expected)


def test_missing_target_module_lists_the_available_ones():
    backbone, _model_cfg = tiny()
    with pytest.raises(ConfigError, match=r"lora.targets \['query_proj'\] not found.*'query'.*'value'"):
        apply_lora(backbone, {**LORA, "targets": ["query_proj"]}, [], ["classifier"])


def test_layer_index_out_of_range():
    backbone, _ = tiny()
    with pytest.raises(ConfigError, match=r"lora.layers \[5\] out of range.*layers 0..1"):
        apply_lora(backbone, {**LORA, "layers": [0, 5]}, ["query", "value"], ["classifier"])
    # the one layer counter, also behind lr_tiers and the loralib import
    assert num_layers(backbone) == 2
    assert layer_index("roberta.encoder.layer.1.attention.self.query.lora_A") == 1
    assert layer_index("roberta.encoder.layer.1") == 1
    assert layer_index("roberta.embeddings.word_embeddings.weight") is None


def test_layer_subset_puts_lora_only_there():
    backbone, _ = tiny()
    model = apply_lora(backbone, {**LORA, "layers": [1]}, ["query", "value"], ["classifier"])
    lora_modules = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert lora_modules and all(".layer.1." in n for n in lora_modules)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"r": 0}, r"lora.r=0 is invalid.*positive integer"),
        ({"r": -2}, r"lora.r=-2 is invalid"),
        ({"alpha": 0}, r"lora.alpha=0 is invalid"),
        ({"dropout": 1.0}, r"lora.dropout=1.0 is invalid.*\[0, 1\)"),
        ({"dropout": -0.1}, r"lora.dropout=-0.1 is invalid"),
        ({"bias": "some"}, r"lora.bias='some' is invalid"),
    ],
)
def test_invalid_lora_values(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_lora_config({**LORA, **override})


@pytest.mark.parametrize(
    ("overrides", "lora_params"),
    [(["model=roberta_base", "lora=r8"], 294_912), (["model=deberta_v2_xxl", "lora=r16"], 4_718_592)],
)
def test_paper_lora_counts_on_the_meta_device(overrides, lora_params):
    cfg = compose_train([*overrides, "model.pretrained=false", "task=rte"])
    with torch.device("meta"):
        model = model_of(cfg, get_task("rte"), device="meta")
    counts = count_parameters(model, cfg.model.trained_in_full)
    assert counts.lora == lora_params
    assert all(p.is_meta for p in model.parameters())
