"""Adapter parameter counts of each method on the papers' real shapes, checked against the papers.

Each model is built as ``dry_run=true`` builds it: on the meta device, from the shapes in
conf/model/<name>.yaml (no weights, no data, no Hub). ``adapter`` below is ``ParamCounts.lora`` (every
parameter peft adds) for adapter methods, and trainable minus head for the weight-subset ones (BitFit):
the papers count neither the classification head nor (DeBERTa) the pooler.
"""

from __future__ import annotations

import pytest

from glue_lora.train import run
from tests.helpers.runs import ROOT, compose_train

CONF_METHODS = sorted(path.stem for path in (ROOT / "conf" / "method").glob("*.yaml"))


def dry_run(capsys, model: str, *overrides: str) -> tuple[dict[str, int], str]:
    """The parameter counts ``python train.py dry_run=true model=<model> <overrides>`` reports, and
    the line it prints first."""
    cfg = compose_train([f"model={model}", "task=mrpc", "dry_run=true", *overrides])
    params = run(cfg)["params"]
    first = capsys.readouterr().out.splitlines()[0]
    return params, first


def adapter(params: dict[str, int]) -> int:
    return params["lora"] or params["trainable"] - params["head"]


@pytest.mark.parametrize(
    "model, overrides, expected",
    [
        # LoRA paper (Hu et al. 2022), Table 2: LoRA on W_q, W_v at r=8, RoBERTa-base 0.3M:
        # 12 layers x 2 matrices x r(768 + 768).
        ("roberta_base", ["method=lora", "lora=r8"], 294_912),
        # LoRA paper, Table 2: RoBERTa-large 0.8M: 24 layers x 2 x 8(1024 + 1024).
        ("roberta_large", ["method=lora", "lora=r8"], 786_432),
        # DoRA (Liu et al. 2024): LoRA plus one magnitude per output feature of each adapted matrix:
        # 294,912 + 12 x 2 x 768.
        ("roberta_base", ["method=dora", "lora=r8"], 313_344),
        # VeRA (Kopiczko et al. 2024), Table 2: RoBERTa-base, rank 1024 on W_q, W_v: 0.043M, that is
        # L(d_model + r) per adapted matrix (its Section 3.3): 24 x (768 + 1024).
        ("roberta_base", ["method=vera"], 43_008),
        # VeRA, Table 2: RoBERTa-large, rank 256: 0.061M = 48 x (1024 + 256).
        ("roberta_large", ["method=vera", "method.peft_options.r=256"], 61_440),
        # LoRA paper Table 2 and VeRA Table 2: BitFit on RoBERTa-base 0.1M (every bias, LayerNorm's too).
        ("roberta_base", ["method=bitfit"], 102_144),
        # PiSSA (Meng et al. 2024), Table 3: DeBERTa-v3-base, LoRA and PiSSA at r=8: 1.33M, every linear
        # layer of each block: 12 x 8 x (4 x (768 + 768) + 2 x (768 + 3072)).
        ("deberta_v3_base", ["method=lora", "lora=r8"], 1_327_104),
        ("deberta_v3_base", ["method=pissa", "lora=r8"], 1_327_104),
        # DoRA on the same: + 12 x (4 x 768 + 3072 + 768) magnitudes. (PiSSA's Table 3 prints 1.27M for
        # its DoRA row, whose rank and targets it does not give.)
        ("deberta_v3_base", ["method=dora", "lora=r8"], 1_410_048),
    ],
)
def test_adapter_parameters_match_the_papers(capsys, model, overrides, expected):
    params, _ = dry_run(capsys, model, *overrides)
    assert adapter(params) == expected


@pytest.mark.parametrize("method", ["pissa", "olora", "eva", "corda", "lora_ga", "loftq"])
def test_a_lora_with_another_start_counts_as_lora(capsys, method):
    # Each paper's claim is a better start for the same B A: the LoRA paper's 294,912 on roberta-base.
    # (EVA may move rank between layers; q and v have the same shapes here, so the total stays.)
    params, first = dry_run(capsys, "roberta_base", f"method={method}", "lora=r8")
    assert adapter(params) == 294_912 and first.startswith(f"method {method}-r8-a16: ")


def test_full_fine_tuning_counts_match_the_papers(capsys):
    # LoRA paper, Table 2: RoBERTa-base FT 125M, RoBERTa-large 355M (with a 2-class head).
    assert dry_run(capsys, "roberta_base", "method=full")[0]["trainable"] == 124_647_170
    assert dry_run(capsys, "roberta_large", "method=full")[0]["trainable"] == 355_361_794
    # PiSSA, Table 3: DeBERTa-v3-base "has 184M trainable parameters" (Full FT row 184M).
    params, _ = dry_run(capsys, "deberta_v3_base", "method=full")
    assert params["trainable"] == params["total"] == 184_423_682


@pytest.mark.parametrize("method", CONF_METHODS)
def test_every_method_reports_its_count_on_deberta_v3_base(capsys, method):
    params, first = dry_run(capsys, "deberta_v3_base", f"method={method}", "lora=r8")
    assert first.startswith("method ") and first.endswith(f": {params['trainable']:,} trainable parameters")
    head = params["head"]  # classifier and pooler: 768 x 768 + 768 + 768 x 2 + 2
    assert head == 592_130
    if method == "full":
        assert first == "method full: 184,423,682 trainable parameters"
    elif method == "head_only":
        assert params["trainable"] == head and first == "method head_only: 592,130 trainable parameters"
    else:
        assert 0 < params["trainable"] - head < 3_000_000, first


def test_dotted_targets_adapt_the_block_outputs_and_not_the_pooler(capsys):
    # tiny_deberta_v3: 2 layers of width 32, feed-forward 64, deberta_v3_base's targets. `output.dense`
    # is the attention and feed-forward outputs: 2 x 8 x (4 x (32 + 32) + 2 x (32 + 64)); with the
    # pooler's dense it would be 8 x (32 + 32) more.
    params, first = dry_run(capsys, "tiny_deberta_v3", "method=lora", "lora=r8")
    assert params["lora"] == 7_168 and first.startswith("method r8-a16: ")


def test_a_dotted_target_that_matches_nothing_is_refused(capsys):
    from glue_lora.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lora.targets \['nothing.dense'\] not found"):
        dry_run(capsys, "tiny_deberta_v3", "method=lora", "lora.targets=[query_proj,nothing.dense]")
