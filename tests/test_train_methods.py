"""train.py's checks of a method against the rest of the config: init_adapter is for plain LoRA."""

from __future__ import annotations

import pytest

from glue_lora.settings.method import LORA, method_settings
from glue_lora.train import check_init_adapter, run
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_train


@pytest.mark.parametrize("method", ["dora", "rslora", "loraplus", "lora_fa", "adalora", "vera", "bitfit"])
def test_init_adapter_is_refused_for_methods_other_than_lora(method):
    overrides = ["model=tiny_roberta", f"method={method}", "init_adapter=/runs/mnli", "dry_run=true"]
    with pytest.raises(ConfigError, match=f"method={method}.*init_adapter=null"):
        run(compose_train(overrides))


def test_init_adapter_is_accepted_for_plain_lora():
    check_init_adapter("/runs/mnli", LORA)
    cfg = compose_train(["model=tiny_roberta", "init_adapter=/runs/mnli"])
    check_init_adapter(cfg.init_adapter, method_settings(cfg.method, cfg.lora))
    check_init_adapter(None, method_settings(compose_train(["method=dora"]).method, {"r": 8}))
