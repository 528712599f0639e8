"""trainer=ddp on CPU (gloo) through Hydra: one results.json and adapter, the single-process numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import load_file

from glue_lora.reports.summary import SUMMARY_CSV
from glue_lora.train import run
from tests.helpers.callbacks import subprocess_env
from tests.helpers.runs import ROOT, TINY, compose_train, job_dirs, read_csv, run_cli

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
    assert "sync_dist" not in output  # every epoch-level value is logged as synced across ranks

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


def _ddp_sweep(glue_fixtures, token_cache, cwd, extra: list[str]):
    """`python train.py -m seed=1,2 trainer=ddp trainer.devices=2` in ``cwd``, the default sweep dir."""
    args = [
        "-m",
        "seed=1,2",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        *TINY,
        "trainer.max_epochs=1",
        "task=rte",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        *extra,
    ]
    return run_cli("train.py", args, cwd=cwd, env=subprocess_env(), timeout=400)


@pytest.mark.slow  # two jobs of two gloo processes each: 1-2 minutes on 2 CPU cores
def test_a_ddp_seed_sweep_leaves_one_sweep_tree_and_a_results_json_per_job(
    glue_fixtures, token_cache, tmp_path
):
    done = _ddp_sweep(glue_fixtures, token_cache, tmp_path, [])
    assert done.returncode == 0, done.stderr[-4000:]
    assert "sync_dist" not in done.stdout + done.stderr  # no Lightning hint about unsynced values
    (saved,) = tmp_path.glob("**/multirun.yaml")  # no second tree from the other ranks
    sweep = saved.parent
    jobs = job_dirs(sweep)
    assert [json.loads((d / "results.json").read_text())["seed"] for d in jobs] == [1, 2]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.glob("**/results.json")) == [
        d.relative_to(tmp_path) / "results.json" for d in jobs
    ]
    for job in jobs:  # rank 1 ran in the job's directory and wrote no config of its own
        assert (job / "train_ddp_process_1.log").is_file()
        saved_config = sorted(p.name for p in (job / ".hydra").iterdir())
        assert saved_config == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    (row,) = read_csv(sweep / SUMMARY_CSV)
    assert (row["n"], row["failed"]) == ("2", "0")


@pytest.mark.slow  # as above
def test_a_rank_that_fails_ends_its_job_which_is_recorded_failed_and_the_next_job_runs(
    glue_fixtures, token_cache, tmp_path
):
    marker = tmp_path / "crashed"
    # In the seed-1 job, rank 1 raises while rank 0 blocks as a rank waiting in a collective would
    # (where NCCL would wait for its timeout); only being killed ends it.
    faults = [
        "+callbacks.crash._target_=tests.helpers.callbacks.CrashAtStep",
        "+callbacks.crash.step=1",
        "+callbacks.crash.rank=1",
        "+callbacks.crash.seed=1",
        f"+callbacks.crash.marker={marker}",
        "+callbacks.hang._target_=tests.helpers.callbacks.HangAtStep",
        "+callbacks.hang.step=1",
        "+callbacks.hang.rank=0",
        "+callbacks.hang.seed=1",
    ]
    done = _ddp_sweep(glue_fixtures, token_cache, tmp_path, faults)
    assert done.returncode == 1  # the sweep ends with the table of its failed jobs
    (saved,) = tmp_path.glob("**/multirun.yaml")
    failed, finished = job_dirs(saved.parent)
    error = json.loads((failed / "failed.json").read_text())["error"]
    assert error.startswith("JobRankError: rank 1 of 2 exited with code 1: RuntimeError: CrashAtStep"), error
    assert (failed / "failed.json").stat().st_mtime - float(marker.read_text()) < 60
    assert not (failed / "results.json").exists()
    assert json.loads((finished / "results.json").read_text())["seed"] == 2
    (row,) = read_csv(saved.parent / SUMMARY_CSV)
    assert (row["n"], row["failed"]) == ("1", "1")


RANK_ONE_OF_TORCHRUN = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "OMP_NUM_THREADS": "1"}


def test_ranks_started_by_torchrun_or_srun_must_name_their_run_dir(tmp_path):
    # each process would pick its own timestamped default directory
    done = run_cli("train.py", ["model=tiny_roberta", "dry_run=true"], cwd=tmp_path, env=RANK_ONE_OF_TORCHRUN)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "hydra.run.dir=" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_torchrun_rank_other_than_zero_joins_the_run_dir_without_writing_its_config(tmp_path):
    run_dir = tmp_path / "run"
    args = ["model=tiny_roberta", "dry_run=true", f"hydra.run.dir={run_dir}"]
    done = run_cli("train.py", args, cwd=tmp_path, env=RANK_ONE_OF_TORCHRUN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in run_dir.iterdir()) == ["train_ddp_process_1.log"]  # no .hydra/


def test_only_rank_zero_starts_a_wandb_run(monkeypatch, tmp_path):
    import wandb

    from glue_lora.training.loggers import build_loggers

    monkeypatch.setenv("RANK", "1")  # torchrun's rank 1, before any Trainer exists
    cfg = compose_train(["logger=wandb", f"hydra.run.dir={tmp_path}"], tmp_path)
    with open_dict(cfg):
        cfg.logger.wandb.save_dir = str(tmp_path)
    loggers = build_loggers(cfg.logger, {"seed": 0}, "rte-tiny-r8", 0)
    assert any(type(lg).__name__ == "WandbLogger" for lg in loggers)
    assert wandb.run is None and not (tmp_path / "wandb").exists()


@pytest.mark.slow  # two gloo processes: about a minute on 2 CPU cores
def test_a_run_started_by_torchrun(glue_fixtures, token_cache, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *TINY,
        "trainer.max_epochs=1",
        "task=rte",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={run_dir}",
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(ROOT / "train.py"), *args],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stdout + done.stderr  # Lightning took torchrun's ranks
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.glob("**/results.json")) == [
        run_dir.relative_to(tmp_path) / "results.json"
    ]
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    assert (run_dir / "train_ddp_process_1.log").is_file()
