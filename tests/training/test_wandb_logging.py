"""W&B: offline by default, runs grouped per configuration, config/params/throughput/best metric logged,
and a missing login never stops a run. Checked by reading back the offline run's transaction log."""

from __future__ import annotations

import json
import logging

from glue_lora.settings.lora import lora_settings
from glue_lora.settings.method import FULL, LORA, method_label
from glue_lora.train import run
from glue_lora.training.loggers import run_group
from tests.helpers.runs import TINY, compose_train
from tests.helpers.wandb_log import read_offline_run


def test_wandb_is_offline_by_default_and_groups_by_configuration(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_train(["logger=wandb", "model=tiny_roberta", "task=rte"])
    assert cfg.logger.wandb.mode == "offline"
    assert "csv" in cfg.logger  # CSV logs stay on
    lora = lora_settings(cfg.lora, ["query"])
    assert run_group("rte", "tiny_roberta", method_label(LORA, lora)) == "rte-tiny_roberta-r8-a16"
    assert run_group("rte", "tiny_roberta", method_label(FULL, None)) == "rte-tiny_roberta-full"


def test_offline_run_holds_config_group_metrics_and_summary(
    glue_fixtures, token_cache, tmp_path, monkeypatch, caplog
):
    # Asked for online mode without any login: the run must go on, offline.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home"))
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    cfg = compose_train(
        [
            *TINY,
            "task=mrpc",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "logger=wandb",
            "logger.wandb.mode=online",
            "seed=3",
        ],
        out,
    )
    with caplog.at_level(logging.WARNING, logger="glue_lora.training.loggers"):
        run(cfg)
    assert "logging offline instead" in caplog.text
    results = json.loads((out / "results.json").read_text())
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    logged = read_offline_run(run_dir)

    assert logged.group == "mrpc-tiny_roberta-r8-a16"
    assert logged.name == "mrpc-tiny_roberta-r8-a16-seed3"
    # The full resolved config.
    assert logged.config["task"]["name"] == "mrpc"
    assert logged.config["lora"]["r"] == 8 and logged.config["seed"] == 3
    assert logged.config["paths"]["output_dir"] == str(out)
    # Dev metrics per evaluation, as in results.json's history.
    val = [row for row in logged.history if "val/accuracy" in row]
    assert [row["val/accuracy"] for row in val] == [h["dev"]["accuracy"] for h in results["history"]]
    assert [row["val/f1"] for row in val] == [h["dev"]["f1"] for h in results["history"]]
    # The summary: best dev metrics, parameter counts, throughput and peak memory.
    summary = logged.summary
    assert summary["best/score"] == results["score"]
    assert summary["best/val/accuracy"] == results["dev"]["accuracy"]
    assert summary["best/val/f1"] == results["dev"]["f1"]
    assert summary["params/trainable"] == results["params"]["trainable"]
    assert summary["params/total"] == results["params"]["total"]
    assert summary["train/samples_per_second"] == results["train"]["samples_per_second"] > 0
    assert summary["train/peak_memory_mb"] == results["train"]["peak_memory_mb"] > 0
