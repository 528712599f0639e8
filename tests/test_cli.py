"""train.py as a user runs it: dry runs, clean errors for bad input, never overwriting a run."""

from __future__ import annotations

import json
import re

import pytest

from glue_lora.train import run
from glue_lora.utils.errors import GlueLoraError
from tests.helpers.runs import TINY, compose_train, run_cli


def test_dry_run_prints_paper_lora_counts_without_weights_or_data():
    result = run_cli("train.py", ["model=roberta_base", "lora=r8", "model.pretrained=false", "dry_run=true"])
    assert result.returncode == 0, result.stderr
    assert "lora                 294,912" in result.stdout
    # the roberta_base/sst2 recipe: 16 per device, accumulated 8 times to the reference's 8 GPUs x 16
    assert "effective batch size 128 (per device 16 x 1 device(s) x 8 accumulation step(s))" in result.stdout
    result = run_cli(
        "train.py", ["model=deberta_v2_xxl", "lora=r16", "model.pretrained=false", "dry_run=true"]
    )
    assert result.returncode == 0, result.stderr
    assert "lora               4,718,592" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=nope"], "Could not find 'task/nope'"),
        (["model=nope"], "Could not find 'model/nope'"),
        (["lora=r3"], "Could not find 'lora/r3'"),
        (["bogus_key=1"], "Could not override 'bogus_key'"),
    ],
)
def test_unknown_options_and_keys_are_refused_by_composition(args, message):
    from hydra.errors import HydraException

    with pytest.raises(HydraException, match=re.escape(message)) as info:
        compose_train(args)
    if "Could not find" in message:
        assert "Available options" in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lora.r=0"], "lora.r=0 is invalid"),
        (["lora.alpha=-1"], "lora.alpha=-1 is invalid"),
        (["lora.dropout=1.5"], "lora.dropout=1.5 is invalid"),
        (["lora.targets=[query,nothing]"], "lora.targets ['nothing'] not found"),
        (["data.batch_size=0"], "data.batch_size=0 is invalid"),
        (["optimizer.lr=-1"], "optimizer.lr=-1 is invalid"),
        (["paths.glue_dir=/does/not/exist"], "The data directory /does/not/exist/SST-2"),
    ],
)
def test_bad_values_fail_before_training_with_the_fix(args, message, tmp_path, glue_fixtures):
    cfg = compose_train([*TINY, f"paths.glue_dir={glue_fixtures}", *args], tmp_path)
    with pytest.raises(GlueLoraError, match=re.escape(message)):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "results.json").exists()


def test_fixable_errors_print_one_paragraph_not_a_traceback(tmp_path, glue_fixtures):
    result = run_cli("train.py", [*TINY, "lora.r=0", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: lora.r=0 is invalid" in result.stderr


def test_a_run_never_overwrites_an_earlier_run(tmp_path, glue_fixtures, token_cache):
    run_dir = tmp_path / "run"
    args = [
        *TINY,
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        f"hydra.run.dir={run_dir}",
    ]
    first = run_cli("train.py", [*args, "task=rte"])
    assert first.returncode == 0, first.stderr[-3000:]
    before = (run_dir / "results.json").read_bytes()
    config_before = (run_dir / ".hydra" / "config.yaml").read_bytes()
    second = run_cli("train.py", [*args, "task=wnli"])
    assert second.returncode != 0
    assert "already holds a run" in second.stdout + second.stderr
    assert (run_dir / "results.json").read_bytes() == before
    assert (run_dir / ".hydra" / "config.yaml").read_bytes() == config_before
    assert json.loads(before)["task"] == "rte"


def test_cfg_job_shows_the_composed_config():
    result = run_cli("train.py", ["model=roberta_base", "task=rte", "--cfg", "job"])
    assert result.returncode == 0, result.stderr
    assert "hub_id: roberta-base" in result.stdout and "name: rte" in result.stdout
