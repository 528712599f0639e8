"""Sweeps that restart: the same multirun command with resume=true skips finished jobs, resumes killed
ones from last.ckpt and runs the rest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from glue_lora.reports.summary import SUMMARY_CSV
from glue_lora.train import run
from glue_lora.utils.errors import ConfigError
from tests.helpers.callbacks import PAUSE_AT, PAUSE_FILE, PAUSE_JOB, subprocess_env
from tests.helpers.runs import ROOT, TINY, compose_tiny_run, job_dirs, read_csv, run_cli


def test_resume_of_a_finished_run_returns_its_results_without_training(
    glue_fixtures, token_cache, tmp_path, capsys
):
    args = ["task=rte", "trainer.max_epochs=1"]
    first = run(compose_tiny_run(glue_fixtures, token_cache, tmp_path, args))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results.json", tmp_path / "adapter")}
    again = run(compose_tiny_run(glue_fixtures, token_cache, tmp_path, [*args, "resume=true"]))
    assert again == json.loads(json.dumps(first))
    assert "already finished with this config" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    with pytest.raises(
        ConfigError, match=r"holds a finished run of another config \(optimizer\.lr: 0\.0005 -> 0\.001"
    ):
        run(
            compose_tiny_run(
                glue_fixtures, token_cache, tmp_path, [*args, "resume=true", "optimizer.lr=1e-3"]
            )
        )


def test_resumed_sweep_without_its_directory_names_the_latest_matching_sweep(tmp_path):
    overrides = ["model=tiny_roberta", "dry_run=true", "seed=0,1"]
    for stamp, extra in (
        ("2024-01-01/10-00-00", []),
        ("2024-01-02/10-00-00", []),
        ("2024-01-03/10-00-00", ["x=1"]),
    ):
        sweep = tmp_path / "multirun" / stamp
        sweep.mkdir(parents=True)
        (sweep / "multirun.yaml").write_text(
            yaml.safe_dump({"hydra": {"overrides": {"task": overrides + extra}}})
        )
        time.sleep(0.01)  # distinct modification times
    done = run_cli("train.py", ["-m", *overrides, "resume=true"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "resume=true in a sweep (-m) continues an earlier sweep" in done.stderr
    assert "add hydra.sweep.dir=multirun/2024-01-02/10-00-00" in done.stderr
    assert not (tmp_path / "multirun" / "2024-01-02" / "10-00-00" / "0").exists()


def sweep_args(glue_fixtures, token_cache, sweep) -> list[str]:
    return [
        "-m",
        *TINY,
        "task=rte",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        "checkpoint.every_n_train_steps=4",
        "+callbacks.pause._target_=tests.helpers.callbacks.PauseAtStep",
        "seed=0,1,2",
        f"hydra.sweep.dir={sweep}",
    ]


@pytest.mark.slow
def test_killed_sweep_resumes_where_it_stopped(glue_fixtures, token_cache, tmp_path):
    sweep = tmp_path / "multirun"
    args = sweep_args(glue_fixtures, token_cache, sweep)
    marker = tmp_path / "paused"
    env = subprocess_env(**{PAUSE_AT: "5", PAUSE_FILE: str(marker), PAUSE_JOB: "1"})
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not marker.exists():  # job 0 done, job 1 paused before step 5 (last.ckpt from step 4)
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    jobs = job_dirs(sweep)
    assert [(j / "results.json").exists() for j in jobs] == [True, False]
    finished_before = (jobs[0] / "results.json").read_bytes()
    assert torch.load(jobs[1] / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4

    # the same command without resume refuses to train over the finished job
    again = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0 and "already holds a run" in again.stdout + again.stderr
    assert (jobs[0] / "results.json").read_bytes() == finished_before

    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "resume=true"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "already finished with this config" in output
    assert "resuming from" in output and "step 4" in output
    jobs = job_dirs(sweep)
    assert len(jobs) == 3 and all((j / "results.json").is_file() for j in jobs)
    assert (jobs[0] / "results.json").read_bytes() == finished_before
    assert sorted(json.loads((j / "results.json").read_text())["seed"] for j in jobs) == [0, 1, 2]
    (row,) = read_csv(sweep / SUMMARY_CSV)
    assert (row["n"], row["failed"]) == ("3", "0")
