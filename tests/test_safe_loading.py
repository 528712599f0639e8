"""Loading is safe: pickles that run code are refused, remote code stays off, secrets stay out of files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from glue_lora.train import run
from glue_lora.training.checkpointing import SafeCheckpointIO, load_checkpoint
from glue_lora.utils.errors import CheckpointError
from glue_lora.utils.redact import redact, secret_overrides
from tests.helpers.runs import CONF, ROOT, TINY, compose_train, run_cli


class RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 8, "payload": RunsCode(marker)}, path)
    return path


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match=r"Refused to load .*evil\.ckpt.*could run arbitrary code"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="Refused to load"):
        SafeCheckpointIO().load_checkpoint(path)  # the path Lightning's resume takes
    assert not marker.exists()


def test_resuming_from_a_malicious_checkpoint_is_refused(glue_fixtures, token_cache, tmp_path):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    malicious_checkpoint(run_dir / "checkpoints" / "last.ckpt", marker)
    cfg = compose_train(
        [
            *TINY,
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "resume=true",
        ],
        run_dir,
    )
    with pytest.raises(CheckpointError, match="Refused to load"):
        run(cfg)
    assert not marker.exists()


def test_a_damaged_checkpoint_is_reported(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_remote_code_is_off_unless_the_user_sets_it(monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from glue_lora.model.backbone import build_backbone

    for model_file in (CONF / "model").glob("*.yaml"):
        cfg = compose_train([f"model={model_file.stem}"])
        assert cfg.model.get("trust_remote_code", False) is False, model_file.name
    calls = []
    real = AutoModelForSequenceClassification.from_config

    def spy(config, **kwargs):
        calls.append(kwargs.get("trust_remote_code"))
        return real(config, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_config", spy)
    from omegaconf import OmegaConf

    model_cfg = OmegaConf.to_container(compose_train(["model=tiny_roberta"]).model, resolve=True)
    build_backbone(model_cfg, num_labels=2)
    build_backbone({**model_cfg, "trust_remote_code": True}, num_labels=2)
    assert calls == [False, True]


def test_secrets_are_masked_and_literal_secret_overrides_refused():
    plain = {"logger": {"wandb": {"api_key": "abc", "project": "p"}}, "model": {"hub_token": None}}
    assert redact(plain) == {
        "logger": {"wandb": {"api_key": "***", "project": "p"}},
        "model": {"hub_token": None},
    }
    assert secret_overrides(
        ["+logger.wandb.api_key=abc", "seed=1", "+model.hub_token=${oc.env:HF_TOKEN}"]
    ) == ["logger.wandb.api_key"]
    done = run_cli("train.py", ["model=tiny_roberta", "+logger.wandb.api_key=abc123"])
    assert done.returncode == 2 and "put a secret on the command line" in done.stderr
    assert "abc123" not in done.stderr


def test_wandb_key_and_tokens_never_reach_the_run_directory(glue_fixtures, token_cache, tmp_path):
    key, token = "wandbsecret" + "0" * 29, "hfsecret12345"
    run_dir = tmp_path / "run"
    done = run_cli(
        "train.py",
        [
            *TINY,
            "trainer.max_epochs=1",
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "logger=wandb",
            "+model.hub_token=${oc.env:HF_TOKEN}",  # a secret the config does read (from the env)
            f"hydra.run.dir={run_dir}",
        ],
        env={
            "WANDB_API_KEY": key,
            "WANDB_MODE": "offline",
            "HF_TOKEN": token,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src"),
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "wandb").is_dir() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    leaks = [str(p) for p in files if key.encode() in p.read_bytes() or token.encode() in p.read_bytes()]
    assert leaks == []
    assert key not in done.stdout + done.stderr and token not in done.stdout + done.stderr


def test_redaction_masks_secrets_but_not_token_ids():
    from glue_lora.utils.redact import REDACTED, redact

    config = {
        "wandb": {"api_key": "k"},
        "hf_token": "t",
        "architecture": {"pad_token_id": 1, "eos_token_id": 2},
    }
    assert redact(config) == {
        "wandb": {"api_key": REDACTED},
        "hf_token": REDACTED,
        "architecture": {"pad_token_id": 1, "eos_token_id": 2},
    }
