"""Nothing a run wrote is lost: atomic writes, no run over an existing one, a crashed sweep job alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from glue_lora.training.checkpointing import SafeCheckpointIO
from glue_lora.utils import artifacts
from glue_lora.utils.artifacts import atomic_save_pretrained, atomic_torch_save, atomic_write_json
from tests.helpers.runs import ROOT, TINY, run_cli


class WriteFailsMidway(Exception):
    pass


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_results_json_survives_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"score": 0.5})

    def half_then_fail(data, handle, **kwargs):
        handle.write('{"score": 0.')
        handle.flush()
        raise WriteFailsMidway

    monkeypatch.setattr(artifacts.json, "dump", half_then_fail)
    with pytest.raises(WriteFailsMidway):
        atomic_write_json(path, {"score": 0.9})
    assert json.loads(path.read_text()) == {"score": 0.5}
    assert leftovers(tmp_path) == []


def test_checkpoint_survives_a_failed_write(tmp_path, monkeypatch):
    io = SafeCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 4}, path)
    real_save = torch.save

    def half_then_fail(obj, handle, *args, **kwargs):
        real_save(obj, handle)
        handle.truncate(handle.tell() // 2)
        raise WriteFailsMidway

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(WriteFailsMidway):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 8}, path)
    monkeypatch.undo()
    kept = io.load_checkpoint(path)
    assert kept["global_step"] == 4 and torch.equal(kept["state_dict"]["w"], torch.ones(3))
    assert leftovers(path.parent) == []


def test_checkpoint_is_written_beside_its_target_not_in_tmp(tmp_path, monkeypatch):
    # A rename from another file system (a tmpfs /tmp) is a copy, which a crash can cut short.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "elsewhere"))
    opened = []
    real_mkstemp = artifacts.tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        opened.append(Path(name).parent)
        return fd, name

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", spy)
    atomic_torch_save({"x": torch.ones(1)}, tmp_path / "ckpts" / "last.ckpt")
    assert opened == [tmp_path / "ckpts"]
    assert oct((tmp_path / "ckpts" / "last.ckpt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class FakeModel:
    def __init__(self, value: str, fail: bool = False) -> None:
        self.value, self.fail = value, fail

    def save_pretrained(self, directory: Path) -> None:
        (Path(directory) / "adapter_model.safetensors").write_text(self.value)
        if self.fail:
            raise WriteFailsMidway


def test_adapter_survives_a_failed_save(tmp_path):
    adapter = tmp_path / "adapter"
    atomic_save_pretrained(FakeModel("old"), adapter, extra_json={"glue_lora.json": {"task": "rte"}})
    with pytest.raises(WriteFailsMidway):
        atomic_save_pretrained(FakeModel("new", fail=True), adapter, extra_json={"glue_lora.json": {}})
    assert (adapter / "adapter_model.safetensors").read_text() == "old"
    assert json.loads((adapter / "glue_lora.json").read_text()) == {"task": "rte"}
    assert leftovers(tmp_path) == []
    atomic_save_pretrained(FakeModel("new"), adapter)
    assert (adapter / "adapter_model.safetensors").read_text() == "new"


def test_a_run_never_writes_into_an_existing_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "results.json").write_text('{"score": 0.9}\n')
    done = run_cli("train.py", ["model=tiny_roberta", f"hydra.run.dir={run_dir}"])
    assert done.returncode == 2
    assert "already holds a run" in done.stderr and "resume=true" in done.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "results.json"]  # no .hydra
    assert (run_dir / "results.json").read_text() == '{"score": 0.9}\n'


def test_a_run_into_a_directory_a_running_run_holds_is_refused_in_one_paragraph(tmp_path):
    from glue_lora.utils.run_lock import LOCK_FILE, RunDirLock

    run_dir = tmp_path / "run"
    running = RunDirLock(run_dir)  # what a running run holds (an flock, seen by other processes)
    running.acquire()
    (run_dir / "csv").mkdir()  # what it has written so far
    done = run_cli("train.py", ["model=tiny_roberta", f"hydra.run.dir={run_dir}"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (paragraph,) = done.stderr.strip().splitlines()
    assert "is in use" in paragraph and f"process {os.getpid()}" in paragraph
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE, "csv"]  # untouched
    running.release()
    assert not (run_dir / LOCK_FILE).exists()


def test_the_lock_a_killed_run_left_is_taken_over(tmp_path, monkeypatch, caplog):
    from glue_lora.utils.run_lock import LOCK_FILE, RunDirLock

    (tmp_path / LOCK_FILE).write_text('{"pid": 999999, "host": "node1", "started": "2026-01-01 00:00:00"}')
    lock = RunDirLock(tmp_path)  # no process holds the flock any more: the kernel dropped it
    with caplog.at_level("INFO", logger="glue_lora.utils.run_lock"):
        lock.acquire()
    assert lock.held and "Took over the lock of process 999999 on node1" in caplog.text
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_ddp_ranks_above_zero_join_the_run_directory_rank_zero_holds(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from glue_lora.training.hydra_callbacks import ProtectRunDir
    from glue_lora.utils.run_lock import RunDirLock

    run_dir = tmp_path / "run"
    rank_zero = RunDirLock(run_dir)
    rank_zero.acquire()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    ProtectRunDir().on_run_start(cfg)  # not refused
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SystemExit):
        ProtectRunDir().on_run_start(cfg)
    rank_zero.release()


@pytest.mark.slow
def test_a_second_run_started_beside_a_running_one_leaves_it_unharmed(glue_fixtures, token_cache, tmp_path):
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    data = [f"paths.glue_dir={glue_fixtures}", f"data.cache_dir={token_cache}"]
    args = [*TINY, "trainer.max_epochs=40", *data]
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (run_dir / ".run.lock").exists() and first.poll() is None:
        time.sleep(0.1)
    second = run_cli("train.py", [*args, f"hydra.run.dir={run_dir}"])
    _, err = first.communicate(timeout=600)
    assert second.returncode == 2 and "is in use" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, err[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["score"] is not None


def test_a_crashed_sweep_job_leaves_the_other_jobs_results(glue_fixtures, token_cache, tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = run_cli(
        "train.py",
        [
            "--multirun",
            *TINY,
            "trainer.max_epochs=1",
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            f"hydra.sweep.dir={sweep_dir}",
            # job 1 crashes at its third step, as a bug or a lost GPU would
            "+callbacks.crash._target_=tests.helpers.callbacks.CrashAtStep",
            "+callbacks.crash.step=1000,2,1001",
        ],
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")},
    )
    # ends with the table of failed jobs, not with Hydra's re-raised traceback
    assert done.returncode == 1
    table = done.stderr.split("error: 1 of 3 job(s) of the sweep failed")[1]
    assert "Error executing job" not in done.stderr and "Traceback" not in table
    (row,) = [line for line in table.splitlines() if line.startswith("1 ")]
    assert "callbacks.crash.step=2" in row and "simulated crash at step 2" in row
    assert row.endswith(str((sweep_dir / "1" / "failed.json").resolve()))
    assert (sweep_dir / "0" / "results.json").is_file()
    assert not (sweep_dir / "1" / "results.json").exists()
    assert (sweep_dir / "2" / "results.json").is_file()
    assert json.loads((sweep_dir / "2" / "results.json").read_text())["task"] == "rte"
