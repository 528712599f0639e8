"""train.py's checks of a method against the rest of the config: init_adapter is for plain LoRA."""

from __future__ import annotations

import pytest

from glue_lora.adapters.init_adapter import check_init_adapter
from glue_lora.settings.method import LORA, method_settings
from glue_lora.train import run
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_train


@pytest.mark.parametrize("method", ["dora", "rslora", "loraplus", "lora_fa", "adalora", "vera", "bitfit"])
def test_init_adapter_is_refused_for_methods_other_than_lora(method):
    cfg = compose_train(["model=tiny_roberta", f"method={method}", "init_adapter=/runs/mnli"])
    with pytest.raises(ConfigError, match=f"method={method}.*init_adapter=null"):
        check_init_adapter(cfg.init_adapter, method_settings(cfg.method, cfg.lora))


def test_a_run_refuses_init_adapter_for_another_method_before_training(glue_fixtures, tmp_path):
    overrides = ["model=tiny_roberta", "task=rte", "method=dora", "init_adapter=/runs/mnli"]
    cfg = compose_train([*overrides, f"paths.glue_dir={glue_fixtures}"], tmp_path)
    with pytest.raises(ConfigError, match=r"method=dora.*init_adapter=null"):
        run(cfg)
    assert not (tmp_path / "results.json").exists()


def test_a_dry_run_counts_a_method_whatever_the_recipe_starts_from():
    # The paper's MRPC/RTE/STS-B recipes start from MNLI: a dry run of another method still counts.
    assert run(compose_train(["model=roberta_base", "task=rte", "method=dora", "dry_run=true"]))["params"]


def test_init_adapter_is_accepted_for_plain_lora():
    check_init_adapter("/runs/mnli", LORA)
    cfg = compose_train(["model=tiny_roberta", "init_adapter=/runs/mnli"])
    check_init_adapter(cfg.init_adapter, method_settings(cfg.method, cfg.lora))
    check_init_adapter(None, method_settings(compose_train(["method=dora"]).method, {"r": 8}))
