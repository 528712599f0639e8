"""conf/experiment/method_comparison.yaml: ten methods on MiniLM, each at its own learning rate, picked
from one table by ``${by_method:...}`` (composed only; nothing is trained)."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from glue_lora.settings.method import method_settings
from glue_lora.settings.resolvers import by_method
from tests.helpers.runs import CONF, compose_train

EXPERIMENT = CONF / "experiment" / "method_comparison.yaml"
LR = {
    "lora": 1e-3,
    "dora": 1e-3,
    "rslora": 1e-3,
    "pissa": 1e-3,
    "loraplus": 2e-4,
    "adalora": 3e-3,
    "vera": 1e-2,
    "bitfit": 5e-3,
    "head_only": 1e-2,
    "full": 1e-4,
}


def test_the_sweep_is_minilm_on_mrpc_and_stsb_x_three_seeds_x_ten_methods():
    sweep = yaml.safe_load(EXPERIMENT.read_text())["hydra"]["sweeper"]["params"]
    assert sweep == {"task": "mrpc,stsb", "method": ",".join(LR), "seed": "0,1,2"}
    cfg = compose_train(["experiment=method_comparison"])
    assert cfg.model.name == "minilm"


@pytest.mark.parametrize("task", ["mrpc", "stsb"])
@pytest.mark.parametrize("name", list(LR))
def test_each_method_gets_its_learning_rate(name, task):
    cfg = compose_train(["experiment=method_comparison", f"method={name}", f"task={task}"])
    assert cfg.optimizer.lr == pytest.approx(LR[name])
    method = method_settings(cfg.get("method"), cfg.get("lora"))
    assert ("full" if method.is_full else method.name) == name
    # the experiment's epochs on both tasks, not STS-B's LoRA recipe (12): 3 for full, 5 for the rest
    assert cfg.trainer.max_epochs == (3 if name == "full" else 5)


def test_a_method_missing_from_the_table_is_named():
    cfg = compose_train(["experiment=method_comparison", "method=ia3"])
    with pytest.raises(InterpolationResolutionError, match=r"ConfigError.*no value for method=ia3"):
        OmegaConf.to_container(cfg.optimizer, resolve=True)


def test_lora_none_with_the_lora_method_is_full_fine_tuning():
    root = OmegaConf.create({"method": {"name": "lora"}, "lora": None})
    assert by_method({"lora": 1, "full": 2}, _root_=root) == 2
    root = OmegaConf.create({"method": {"name": "vera"}, "lora": {"r": 8}})
    assert by_method({"lora": 1, "vera": 3}, _root_=root) == 3
