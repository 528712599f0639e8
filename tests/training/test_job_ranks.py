"""The ranks of a DDP sweep job: which jobs get them, their command lines and environments, and the
watch that ends a job as soon as one of its ranks fails (fake ranks: short Python processes)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

from glue_lora.training.job_ranks import (
    RUN_DIR_VARIABLE,
    SWEEP_DIR_VARIABLE,
    processes_to_start,
    rank_command,
    rank_environment,
    rank_overrides,
    relaunches_script,
    run_ranks,
)
from glue_lora.utils.errors import JobRankError
from tests.helpers.runs import ROOT

SCRIPT = [sys.executable, "/abs/train.py"]


def test_each_rank_is_a_single_run_of_the_jobs_overrides_in_its_directory():
    overrides = ["seed=1", "trainer=ddp", "+callbacks.x._target_=a.B", "optimizer.lr=0.0123"]
    zero, one = (rank_command(SCRIPT, overrides, rank) for rank in (0, 1))
    # the job's own values (an Optuna trial's too), never the sweep's -m or its comma lists
    assert zero[: 2 + len(overrides)] == [*SCRIPT, *overrides]
    assert "-m" not in zero and "--multirun" not in zero
    assert "hydra.mode=RUN" in zero
    assert f"hydra.run.dir=${{oc.env:{RUN_DIR_VARIABLE}}}" in zero
    assert "hydra.output_subdir=null" in zero  # .hydra/ is the sweep job's, saved once
    assert not any(a.startswith("hydra.job.name=") for a in zero)  # rank 0 logs to the job's train.log
    assert one == [*zero, "hydra.job.name=train_ddp_process_1"]


def test_rank_environment_is_lightnings_and_names_the_run_dir():
    env = rank_environment({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1"}, 1, 2, "/sweep/0", 29511, "/sweep")
    assert env == {
        "PATH": "/bin",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29511",
        "NODE_RANK": "0",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        RUN_DIR_VARIABLE: "/sweep/0",
        SWEEP_DIR_VARIABLE: "/sweep",
    }


def test_ranks_keep_the_sweeps_hydra_settings_but_run_as_single_runs_in_its_directory():
    hydra = [
        "hydra.mode=MULTIRUN",
        "hydra.sweep.dir=/tmp/s",
        "hydra.sweeper.study_name=shared",
        "hydra.job.name=x",
    ]
    overrides = rank_overrides(["seed=1"], hydra)
    # an Optuna study's storage interpolates the sweep dir and the sweeper's settings
    assert overrides == [
        "seed=1",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweep.dir=${{oc.env:{SWEEP_DIR_VARIABLE}}}",
    ]


@pytest.mark.parametrize(
    ("strategy", "relaunches"),
    [
        ("ddp", True),
        ("auto", True),
        (None, True),
        ("ddp_find_unused_parameters_true", True),
        ("fsdp", True),
        ("ddp_spawn", False),  # Lightning spawns from the calling process: nothing is re-run
        ("ddp_notebook", False),
        ("single_device", False),
        ({"_target_": "lightning.pytorch.strategies.DDPStrategy", "timeout": 60}, True),
        ({"_target_": "lightning.pytorch.strategies.DDPStrategy", "start_method": "spawn"}, False),
    ],
)
def test_which_strategies_lightning_would_relaunch(strategy, relaunches):
    assert relaunches_script(strategy) is relaunches


@pytest.mark.parametrize(
    ("trainer", "env", "n"),
    [
        ({"strategy": "ddp", "devices": 2, "accelerator": "cpu"}, {}, 2),
        ({"strategy": "ddp", "devices": 1, "accelerator": "cpu"}, {}, 0),
        ({"strategy": "auto", "devices": 1}, {}, 0),
        ({"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu"}, {}, 0),
        ({"strategy": "ddp", "devices": 2, "num_nodes": 2, "accelerator": "cpu"}, {}, 0),
        # already a rank: of torchrun, of srun, of Lightning or of our own launch
        ({"strategy": "ddp", "devices": 2, "accelerator": "cpu"}, {"TORCHELASTIC_RUN_ID": "x"}, 0),
        ({"strategy": "ddp", "devices": 2, "accelerator": "cpu"}, {"SLURM_NTASKS": "2"}, 0),
        ({"strategy": "ddp", "devices": 2, "accelerator": "cpu"}, {"LOCAL_RANK": "0"}, 0),
    ],
)
def test_processes_to_start(trainer, env, n, monkeypatch):
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert processes_to_start(trainer) == n


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_failing_rank_ends_the_job_at_once_and_is_named():
    # rank 0 never ends by itself (as a rank blocked in a collective): the watch must kill it
    hang = _python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)")
    fail = _python("import sys, time; time.sleep(0.5); sys.exit('RuntimeError: boom on rank 1')")
    sink = io.BytesIO()
    start = time.monotonic()
    with pytest.raises(JobRankError) as err:
        run_ranks([hang, fail], [{}, {}], poll_seconds=0.05, stderr_sink=sink)
    assert time.monotonic() - start < 10
    assert str(err.value).startswith("rank 1 of 2 exited with code 1: RuntimeError: boom on rank 1 (")
    assert b"boom on rank 1" in sink.getvalue()  # the rank's stderr reaches the sweep's


def test_ranks_that_all_finish_end_the_job_cleanly(tmp_path):
    done = [_python(f"open({str(tmp_path / f'rank{r}')!r}, 'w').write('ok')") for r in range(2)]
    run_ranks(done, [{}, {}], poll_seconds=0.05, stderr_sink=io.BytesIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]


def test_a_sigterm_reaches_every_rank_which_may_save_before_the_job_exits_143(tmp_path):
    import os
    import signal
    import threading

    # each fake rank, told to stop, "saves its checkpoint" and exits 143 as train.py does
    ranks = [
        _python(
            "import signal, sys, time\n"
            "def stop(*_):\n"
            f"    open({str(tmp_path / f'saved{r}')!r}, 'w').write('ok'); sys.exit(143)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "time.sleep(600)"
        )
        for r in range(2)
    ]
    threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()  # once both have started
    with pytest.raises(SystemExit) as exit_:
        run_ranks(ranks, [{}, {}], poll_seconds=0.05, stderr_sink=io.BytesIO())
    assert exit_.value.code == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved0", "saved1"]


@pytest.mark.parametrize(
    ("mode", "overrides", "n"),
    [
        ("MULTIRUN", [], 2),
        ("MULTIRUN", ["dry_run=true"], 0),  # builds on the meta device: no processes
        ("MULTIRUN", ["trainer.devices=1"], 0),
        ("RUN", [], 0),  # a single run: Lightning's own launcher starts its ranks
    ],
)
def test_which_jobs_start_their_ranks_from_the_sweeps_process(mode, overrides, n, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from glue_lora.sweep_job import ranks_to_start
    from tests.helpers.runs import CONF

    for name in ("LOCAL_RANK", "RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    ddp = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", *overrides]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=ddp, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode[mode]
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    HydraConfig.instance().set_config(cfg)
    assert ranks_to_start(cfg) == n


def test_a_rank_of_an_experiment_that_sweeps_by_itself_is_still_a_single_run(tmp_path):
    # experiment=lora_vs_full sets hydra.mode: MULTIRUN; a rank started with its overrides must not sweep
    run_dir = tmp_path / "job"
    overrides = ["experiment=lora_vs_full", "model=tiny_roberta", "dry_run=true"]
    command = rank_command([sys.executable, str(ROOT / "train.py")], overrides, 0)
    env = {**os.environ, RUN_DIR_VARIABLE: str(run_dir)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("multirun.yaml"))
    assert "effective batch size" in done.stdout
