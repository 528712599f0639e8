"""Resuming: a run killed mid-epoch (SIGKILL) or stopped by SIGTERM ends exactly like one never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glue_lora.data.sampler import EpochBatchSampler
from glue_lora.train import run
from glue_lora.training.csv_logger import CSVLogger
from glue_lora.training.resume import SIGTERM_EXIT_CODE, config_changes
from glue_lora.utils.errors import ConfigError
from tests.helpers.callbacks import PAUSE_AT, PAUSE_FILE, subprocess_env
from tests.helpers.runs import ROOT, TINY, compose_train

# 48 rows in batches of 8: 6 steps an epoch, 12 in all; last.ckpt every 4 steps (4, 8) and at
# each epoch end (6, 12). A pause before step 10 is in epoch 1 with last.ckpt from step 8, two
# batches into the epoch.
STEPS_PER_EPOCH = 6


def run_args(glue_fixtures: Path, token_cache: Path, run_dir: Path) -> list[str]:
    return [
        *TINY,
        "task=rte",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        "deterministic=true",
        "checkpoint.every_n_train_steps=4",
        # waits at a step when $GLUE_LORA_TEST_PAUSE_AT is set; in every run, so configs match
        "+callbacks.pause._target_=tests.helpers.callbacks.PauseAtStep",
        f"hydra.run.dir={run_dir}",
    ]


def train(args: list[str], **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done


def start_paused(args: list[str], step: int, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Start train.py and wait until it pauses before ``step``; returns the process."""
    marker = tmp_path / f"paused-{step}"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=subprocess_env(**{PAUSE_AT: str(step), PAUSE_FILE: str(marker)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"train.py ended before pausing:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("train.py did not reach the pause")
        time.sleep(0.1)
    return process, marker


def read_run(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return {
        "results": json.loads((run_dir / "results.json").read_text()),
        "adapter": load_file(run_dir / "adapter" / "adapter_model.safetensors"),
        "last": ckpt,
        "csv": (run_dir / "csv" / "metrics.csv").read_text(),
    }


def assert_same_run(resumed: dict, reference: dict) -> None:
    a, b = resumed["results"], reference["results"]
    assert a["history"] == b["history"]  # every epoch's dev metrics, bit for bit
    assert (a["score"], a["dev"], a["best"]) == (b["score"], b["dev"], b["best"])
    assert resumed["adapter"].keys() == reference["adapter"].keys()
    for name, tensor in reference["adapter"].items():
        assert torch.equal(resumed["adapter"][name], tensor), name
    # the final LoRA weights and optimizer state (the adapter is from the best epoch)
    for name, tensor in reference["last"]["state_dict"].items():
        assert torch.equal(resumed["last"]["state_dict"][name], tensor), name
    for sa, sb in zip(
        resumed["last"]["optimizer_states"][0]["state"].values(),
        reference["last"]["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    assert resumed["last"]["global_step"] == reference["last"]["global_step"] == 2 * STEPS_PER_EPOCH
    # the log was continued, not restarted: the same rows as the uninterrupted run's
    assert resumed["csv"] == reference["csv"]


@pytest.fixture(scope="module")
def reference(glue_fixtures, token_cache, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = train(run_args(glue_fixtures, token_cache, run_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    return read_run(run_dir)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(
    reference, glue_fixtures, token_cache, tmp_path
):
    run_dir = tmp_path / "run"
    args = run_args(glue_fixtures, token_cache, run_dir)
    process, _ = start_paused(args, 10, tmp_path)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not (run_dir / "results.json").exists()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 8  # the periodic checkpoint: two batches into epoch 1
    assert ckpt["glue_lora"]["train_loader"] == {"epoch": 1, "batches": 2}

    done = train([*args, "resume=true"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout and "step 8" in done.stdout
    assert_same_run(read_run(run_dir), reference)
    # .hydra/ keeps the config the run started with; the resumption's is beside it
    assert "resume=true" not in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "resume=true" in (run_dir / ".hydra" / "resume-1" / "overrides.yaml").read_text()


def test_sigterm_saves_a_checkpoint_and_resume_equals_uninterrupted_run(
    reference, glue_fixtures, token_cache, tmp_path
):
    run_dir = tmp_path / "run"
    args = run_args(glue_fixtures, token_cache, run_dir)
    process, _ = start_paused(args, 9, tmp_path)  # last periodic checkpoint: step 8
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == SIGTERM_EXIT_CODE
    output = process.stdout.read()
    assert "SIGTERM: saved" in output
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 10  # the step in progress was finished and saved
    assert not (run_dir / "results.json").exists()

    # the other spelling: ckpt_path=<run dir> resumes in that run's directory
    resume_args = [a for a in args if not a.startswith("hydra.run.dir=")] + [f"ckpt_path={run_dir}"]
    done = train(resume_args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 10" in done.stdout
    assert_same_run(read_run(run_dir), reference)


def test_resume_refuses_a_changed_config(glue_fixtures, token_cache, tmp_path):
    base = [*TINY, "task=rte", f"paths.glue_dir={glue_fixtures}", f"data.cache_dir={token_cache}"]
    run(compose_train([*base, "trainer.max_epochs=1"], tmp_path))
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(ConfigError, match=r"optimizer\.lr: 0\.0005 -> 0\.001.*original settings"):
        run(compose_train([*base, "trainer.max_epochs=1", "resume=true", "optimizer.lr=1e-3"], tmp_path))
    assert (tmp_path / "results.json").read_bytes() == before
    # A run recorded before the subpackages names a class by its old path: the same setting.
    old, new = "glue_lora.reference_adamw.ReferenceAdamW", "glue_lora.training.reference_adamw.ReferenceAdamW"
    assert config_changes({"optimizer": {"_target_": old}}, {"optimizer": {"_target_": new}}) == []
    assert config_changes({"optimizer": {"_target_": "x.Adam"}}, {"optimizer": {"_target_": new}})


def test_resume_without_checkpoint_starts_from_the_beginning(glue_fixtures, token_cache, tmp_path, caplog):
    args = [*TINY, "task=rte", f"paths.glue_dir={glue_fixtures}", f"data.cache_dir={token_cache}"]
    results = run(compose_train([*args, "resume=true", "trainer.max_epochs=1"], tmp_path))
    assert "holds no checkpoint yet" in caplog.text
    assert results["history"][0]["step"] == STEPS_PER_EPOCH


def test_ckpt_path_that_does_not_exist_is_refused(tmp_path):
    cfg = compose_train([*TINY, f"ckpt_path={tmp_path / 'nope'}"], tmp_path)
    with pytest.raises(ConfigError, match="there is no checkpoint"):
        run(cfg)


def test_resume_cli_needs_the_run_directory(tmp_path):
    done = train(["model=tiny_roberta", "resume=true"])
    assert done.returncode == 2
    assert "resume=true needs the directory of the run" in done.stderr


def test_every_epoch_has_its_own_order_and_resumption_skips_trained_batches():
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = EpochBatchSampler(list(range(40)), 4, shuffle=True, seed=3)
    loader = DataLoader(list(range(40)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 0)  # what Lightning calls at every epoch start
    epoch0 = list(sampler)
    _set_sampler_epoch(loader, 1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1
    sampler.skip_batches(epoch=1, n=3)
    assert list(sampler) == epoch1[3:]
    assert list(sampler) == epoch1  # the skip applies to one pass only
    sampler.skip_batches(epoch=0, n=3)
    assert list(sampler) == epoch1  # ... and only to its own epoch


def test_ddp_shards_are_slices_of_the_single_process_batches():
    lengths = [(i * 7) % 23 for i in range(50)]
    single = list(EpochBatchSampler(lengths, 8, shuffle=True, seed=1))
    ranks = [
        list(EpochBatchSampler(lengths, 4, shuffle=True, seed=1, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(EpochBatchSampler(lengths, 4, shuffle=True, num_replicas=2))
    for batch, part0, part1 in zip(single, *ranks, strict=False):
        assert sorted(part0 + part1) == sorted(batch)
    evaluation = [EpochBatchSampler(lengths, 4, shuffle=False, num_replicas=3, rank=r) for r in range(3)]
    seen = sorted(i for s in evaluation for batch in s for i in batch)
    assert seen == list(range(50)) and all(len(list(s)) == len(s) for s in evaluation)


def test_csv_logger_continues_an_existing_log(tmp_path):
    first = CSVLogger(tmp_path, name="csv", version="")
    for step in range(4):
        first.log_metrics({"loss": float(step)}, step=step)
    first.save()
    second = CSVLogger(tmp_path, name="csv", version="")
    second.drop_rows_from(2)  # steps 2 and 3 will be trained (and logged) again
    second.log_metrics({"loss": 20.0, "acc": 0.5}, step=2)
    second.save()
    lines = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert lines == ["acc,loss,step", ",0.0,0", ",1.0,1", "0.5,20.0,2"]


ADALORA = [
    "method=adalora",
    "lora.r=2",
    "method.peft_options.init_r=4",
    "method.peft_options.tinit=0.2",  # steps 3-9 of 12 re-allocate ranks: resumed at 8, inside
    "method.peft_options.tfinal=0.2",
    "method.peft_options.deltaT=1",
]


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(ADALORA, id="adalora"),
        pytest.param(["method=corda", "method.calibration_batches=2"], id="corda"),
    ],
)
def test_a_method_with_state_outside_its_weights_resumes_as_if_never_stopped(
    method, glue_fixtures, token_cache, tmp_path
):
    """AdaLoRA's importance scores and rank pattern live in its callback; CorDA's residual base is
    computed from train batches again. Both must continue exactly where the killed run was."""
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    done = train([*run_args(glue_fixtures, token_cache, reference_dir), *method])
    assert done.returncode == 0, done.stderr[-3000:]

    args = [*run_args(glue_fixtures, token_cache, run_dir), *method]
    process, _ = start_paused(args, 10, tmp_path)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    done = train([*args, "resume=true"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 8" in done.stdout
    assert_same_run(read_run(run_dir), read_run(reference_dir))


def test_a_config_recorded_before_the_method_group_resumes_as_lora_or_full(tmp_path):
    """A run recorded before ``method=`` existed meant LoRA (full fine-tuning with lora=none): today's
    config at that method resumes it; another method does not."""
    from glue_lora.training.resume import run_config

    def recorded_before_methods(overrides: list[str]) -> dict:
        return {k: v for k, v in run_config(compose_train(overrides, tmp_path)).items() if k != "method"}

    for lora in ("r8", "none"):
        assert (
            config_changes(
                recorded_before_methods([f"lora={lora}"]),
                run_config(compose_train([f"lora={lora}"], tmp_path)),
            )
            == []
        )
    full = run_config(compose_train(["method=full", "lora=none"], tmp_path))
    assert config_changes(recorded_before_methods(["lora=none"]), full) == []
    changes = config_changes(
        recorded_before_methods(["lora=r8"]), run_config(compose_train(["method=dora"], tmp_path))
    )
    assert any(c.startswith("method.") for c in changes)
