"""trainer=ddp on CPU (gloo) through Hydra: one results.json and adapter, the single-process numbers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from glue_lora.train import run
from tests.helpers.runs import ROOT, TINY, compose_train, run_cli

# Without dropout the two runs differ only in the order of float additions (two half-batch means
# averaged across processes versus one mean over the whole batch).
NO_DROPOUT = [
    "+model.architecture.hidden_dropout_prob=0.0",
    "+model.architecture.attention_probs_dropout_prob=0.0",
]


@pytest.mark.slow  # two processes started by Lightning: about a minute on 2 CPU cores
def test_ddp_on_cpu_matches_a_single_process_with_the_same_global_batch(glue_fixtures, token_cache, tmp_path):
    common = [
        *TINY,
        "task=stsb",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        "deterministic=true",
        "trainer.accelerator=cpu",
        *NO_DROPOUT,
    ]
    ddp_dir = tmp_path / "ddp"
    done = run_cli(
        "train.py",
        [*common, "trainer=ddp", "trainer.devices=2", "data.batch_size=8", f"hydra.run.dir={ddp_dir}"],
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "effective batch size 16 (per device 8" in done.stdout
    output = done.stdout + done.stderr  # Lightning's lines go through Hydra's console handler
    assert "world_size=2" in output or "distributed_backend=gloo" in output

    # rank 0 wrote the results; rank 1 joined the same directory and wrote no config or results
    assert sorted(p.name for p in ddp_dir.glob("**/results.json")) == ["results.json"]
    assert len(list(ddp_dir.glob("**/adapter_model.safetensors"))) == 1
    assert sorted(p.name for p in (ddp_dir / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    assert (ddp_dir / "train_ddp_process_1.log").is_file()

    single = run(compose_train([*common, "data.batch_size=16"], tmp_path / "single"))
    ddp = json.loads((ddp_dir / "results.json").read_text())
    assert [h["step"] for h in ddp["history"]] == [h["step"] for h in single["history"]]
    for a, b in zip(ddp["history"], single["history"], strict=True):
        for metric, value in b["dev"].items():
            assert a["dev"][metric] == pytest.approx(value, abs=1e-4), metric
    weights_ddp = load_file(ddp_dir / "adapter" / "adapter_model.safetensors")
    weights_single = load_file(tmp_path / "single" / "adapter" / "adapter_model.safetensors")
    for name, tensor in weights_single.items():
        torch.testing.assert_close(weights_ddp[name], tensor, rtol=1e-4, atol=1e-6)
