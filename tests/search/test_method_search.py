"""experiment=method_search (every method's search) and method_comparison_tuned (the cells at the
searched rates), composed only; nothing is trained."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import glue_lora  # noqa: F401  (registers the resolvers the configs use)
from glue_lora.settings.resolvers import searched
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import CONF, compose_train


@pytest.mark.parametrize(("method", "epochs"), [("lora", 5), ("vera", 5), ("full", 3)])
def test_every_method_gets_the_same_search_at_the_tables_epochs(method, epochs):
    cfg = compose_train(["experiment=method_search", f"method={method}", "task=stsb"])
    assert cfg.hparams_search.name == "lr"
    assert cfg.model.name == "minilm"
    assert cfg.trainer.max_epochs == epochs
    assert cfg.data.dev_from_train is True
    assert dict(cfg.hparams_search.lr_range) == dict(cfg.hparams_search.lr_ranges[method])


def _root(method, task):
    return compose_train(["experiment=method_comparison", f"method={method}", f"task={task}"])


def test_the_tuned_cells_read_each_methods_searched_rate(tmp_path):
    for method, lr in (("vera", 0.02), ("full", 3e-4)):
        (tmp_path / "mrpc" / method).mkdir(parents=True)
        results = {"name": "optuna", "best_params": {"optimizer.lr": lr}, "best_value": 0.8}
        OmegaConf.save(OmegaConf.create(results), tmp_path / "mrpc" / method / "optimization_results.yaml")
    assert searched(str(tmp_path), "optimizer.lr", _root_=_root("vera", "mrpc")) == 0.02
    assert searched(str(tmp_path), "optimizer.lr", _root_=_root("full", "mrpc")) == 3e-4
    with pytest.raises(ConfigError, match=r"no searched optimizer.lr for task=stsb method=vera"):
        searched(str(tmp_path), "optimizer.lr", _root_=_root("vera", "stsb"))


def test_the_tuned_experiment_is_the_comparison_with_the_searched_rate():
    cfg = compose_train(["experiment=method_comparison_tuned"])
    assert OmegaConf.to_container(cfg.optimizer, resolve=False)["lr"].startswith("${searched:")
    assert cfg.trainer.max_epochs == 5  # the comparison's epochs
    assert cfg.data.dev_from_train is False  # the cells are scored on the real dev set
    tuned = OmegaConf.load(CONF / "experiment" / "method_comparison_tuned.yaml")
    assert "method_comparison" in tuned.defaults  # its sweep: tasks x methods x seeds 0-2
