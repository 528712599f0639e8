"""End-to-end: train.py's run on every task's real file layout, and on the real GLUE files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from glue_lora.data.tasks import TASKS
from glue_lora.train import run
from tests.helpers.runs import TINY, compose_train


def check_run_contract(out_dir, task: str, lora: bool = True) -> dict:
    results = json.loads((out_dir / "results.json").read_text())
    spec = TASKS[task]
    assert results["task"] == task
    assert results["metric"] == spec.primary_metric
    assert set(results["dev"]) == set(spec.metrics)
    assert results["score"] == results["dev"][spec.primary_metric]
    assert -1.0 <= results["score"] <= 1.0
    assert results["history"] and all(set(h["dev"]) == set(spec.metrics) for h in results["history"])
    assert set(results["params"]) >= {"total", "trainable", "lora"}
    assert {"seconds", "samples_per_second", "tokens_per_second", "peak_memory_mb"} <= set(results["train"])
    # on the CPU: no device peak, the host's (measured inside fit) under both keys
    assert results["train"]["peak_device_memory_mb"] is None
    assert results["train"]["peak_host_memory_mb"] == results["train"]["peak_memory_mb"] > 0
    if task == "mnli":
        assert set(results["dev_mismatched"]) == set(spec.metrics)
    else:
        assert "dev_mismatched" not in results
    adapter = out_dir / "adapter"
    if lora:
        assert results["lora"]["targets"] == ["query", "value"]
        assert (adapter / "adapter_config.json").is_file()
        weights = load_file(adapter / "adapter_model.safetensors")
        assert any("lora_A" in k for k in weights) and any("classifier" in k for k in weights)
    else:
        assert results["lora"] is None
        assert (adapter / "config.json").is_file()
    ckpt = torch.load(out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # Trainable-only checkpoints: nothing frozen is stored.
    n_saved = sum(v.numel() for v in ckpt["state_dict"].values())
    assert n_saved == results["params"]["trainable"]
    return results


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_trains_on_its_file_layout(task, glue_fixtures, token_cache, tmp_path):
    data_dir = glue_fixtures / "ag_news" if task == "ag_news" else glue_fixtures
    key = "paths.ag_news_dir" if task == "ag_news" else "paths.glue_dir"
    cfg = compose_train(
        [*TINY, f"task={task}", f"{key}={data_dir}", f"data.cache_dir={token_cache}"], tmp_path
    )
    run(cfg)
    check_run_contract(tmp_path, task)


@pytest.mark.parametrize("task", ["sst2", "rte", "cola", "stsb", "mrpc"])
def test_real_glue_files(task, real_glue, token_cache, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            f"task={task}",
            f"paths.glue_dir={real_glue}",
            f"data.cache_dir={token_cache}",
            "data.max_train_rows=64",
            "data.max_eval_rows=64",
        ],
        tmp_path,
    )
    run(cfg)
    check_run_contract(tmp_path, task)


def test_deberta_trains_pooler_and_classifier(glue_fixtures, token_cache, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            "model=tiny_deberta",
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
        ],
        tmp_path,
    )
    results = run(cfg)
    assert results["lora"]["targets"] == ["query_proj", "value_proj"]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("pooler" in k for k in weights) and any("classifier" in k for k in weights)


def test_full_fine_tuning_trains_everything(glue_fixtures, token_cache, tmp_path):
    cfg = compose_train(
        [*TINY, "task=sst2", "lora=none", f"paths.glue_dir={glue_fixtures}", f"data.cache_dir={token_cache}"],
        tmp_path,
    )
    results = run(cfg)
    assert results["params"]["trainable"] == results["params"]["total"]
    assert results["params"]["lora"] == 0
    check_run_contract(tmp_path, "sst2", lora=False)
