"""Provenance: the commit, command, versions, hardware and start time a result records; never a crash."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime
from types import SimpleNamespace

import pytest
import torch

from glue_lora.utils import provenance
from glue_lora.utils.provenance import command_line, git_state, gpu_facts, library_versions, run_provenance


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("no git binary")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "results.json").write_text("{}")  # untracked run output: not dirty
    assert git_state(tmp_path / "outputs") == {"commit": sha, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path) == {"commit": sha, "dirty": True}


def test_git_state_is_null_outside_a_repository_or_without_git(tmp_path, monkeypatch):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    monkeypatch.setattr(provenance.shutil, "which", lambda name: None)
    assert git_state() == {"commit": None, "dirty": None}


def test_a_hanging_git_costs_at_most_its_timeout(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    slow = tmp_path / "git"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(provenance.shutil, "which", lambda name: str(slow))
    monkeypatch.setattr(provenance, "GIT_TIMEOUT_S", 0.5)
    start = time.monotonic()
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    assert time.monotonic() - start < 5


def test_the_command_line_masks_secrets_and_not_other_values():
    argv = ["/home/me/glue-lora/train.py", "task=rte", "+logger.wandb.api_key=abc123", "hf_token=${oc.env:T}"]
    command = command_line(argv)
    assert command[1:] == ["train.py", "task=rte", "+logger.wandb.api_key=***", "hf_token=${oc.env:T}"]
    assert "abc123" not in " ".join(command)


def test_versions_name_python_and_each_library():
    versions = library_versions()
    assert set(versions) == {"python", *provenance.LIBRARIES}
    assert versions["torch"] and versions["hydra-core"] and versions["python"].count(".") == 2


class FakeCuda:
    def __init__(self, names):
        self.names = names

    def is_available(self):
        return bool(self.names)

    def device_count(self):
        return len(self.names)

    def get_device_properties(self, i):
        return SimpleNamespace(name=self.names[i], total_memory=80 * 2**30)


def test_gpu_facts_list_each_gpu_with_cuda_and_cudnn_versions():
    facts = gpu_facts(FakeCuda(["NVIDIA H100 80GB HBM3"] * 2), "12.4", 90100)
    assert facts == {
        "gpu_count": 2,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80.0}] * 2,
        "cuda": "12.4",
        "cudnn": 90100,
    }
    assert gpu_facts(FakeCuda([]), "12.4", 90100) == {"gpu_count": 0, "gpus": [], "cuda": None, "cudnn": None}


def test_run_provenance_starts_in_utc_and_describes_this_machine():
    found = run_provenance(["train.py"])
    assert datetime.fromisoformat(found["started"]).utcoffset().total_seconds() == 0
    assert found["hardware"]["cpu_cores"] >= 1 and found["hardware"]["gpu_count"] is not None
    assert found["hardware"]["torch_threads"] == torch.get_num_threads()
