"""trainer.precision's origin (command line over recipe over preset), the node preset, TF32 for fp32."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from glue_lora.settings.precision import PrecisionSettings
from glue_lora.settings.validation import validate
from glue_lora.training.tf32 import set_matmul_precision
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_train, run_cli


def test_the_preset_gives_the_precision_where_no_recipe_does():
    settings = PrecisionSettings.from_config(compose_train(["trainer=gpu"]))
    assert (settings.precision, settings.origin) == ("bf16-mixed", "preset")
    assert PrecisionSettings.from_config(compose_train([])).precision == "32-true"


def test_the_recipe_wins_over_the_preset_and_says_so():
    settings = PrecisionSettings.from_config(
        compose_train(["model=roberta_base", "task=mnli", "trainer=gpu"])
    )
    assert (settings.precision, settings.origin, settings.preset_precision) == (
        "32-true",
        "recipe",
        "bf16-mixed",
    )
    assert "the recipe roberta_base/mnli's recipe_precision, over" in settings.describe()
    assert "bf16-mixed" in settings.describe()
    deberta = compose_train(["model=deberta_v2_xxl", "task=rte", "trainer=gpu_node", "trainer.devices=8"])
    assert deberta.trainer.precision == "16-mixed"


def test_trainer_precision_wins_over_the_recipe():
    cfg = compose_train(["model=roberta_base", "task=mnli", "trainer=gpu", "trainer.precision=bf16-mixed"])
    settings = PrecisionSettings.from_config(cfg)
    assert (settings.precision, settings.origin) == ("bf16-mixed", "config")  # no Hydra run: not told apart


def test_the_node_preset_takes_every_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    cfg = compose_train(["trainer=gpu_node"])
    assert (cfg.trainer.devices, cfg.trainer.strategy, cfg.trainer.accelerator) == (3, "ddp", "gpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match=r"trainer\.devices=0: no GPU is visible.*trainer\.devices=8"):
        validate(compose_train(["trainer=gpu_node"]))


def test_a_dry_run_prints_the_precision_and_its_origin_on_a_node_of_8_gpus(tmp_path):
    args = [
        "model=roberta_base",
        "task=cola",
        "trainer=gpu_node",
        "dry_run=true",
        f"hydra.run.dir={tmp_path}",
    ]
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    done = run_cli("train.py", [*args, "trainer.precision=16-mixed"], env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "precision 16-mixed, from trainer.precision= on the command line" in done.stdout
    assert "per device 8 x 8 device(s) x 1 accumulation step(s)" in done.stdout


@pytest.fixture
def matmul_precision():
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


def fake_cuda(capability: tuple[int, int]) -> SimpleNamespace:
    return SimpleNamespace(is_available=lambda: True, get_device_capability=lambda: capability)


@pytest.mark.usefixtures("matmul_precision")
def test_fp32_runs_use_tf32_on_gpus_that_have_it():
    torch.set_float32_matmul_precision("highest")
    line = set_matmul_precision(True, True, "gpu", cuda=fake_cuda((8, 0)))
    assert torch.get_float32_matmul_precision() == "high"
    assert "TF32" in line and "tf32=false" in line
    # the switch back to full fp32
    assert "full fp32" in set_matmul_precision(False, True, "gpu", cuda=fake_cuda((9, 0)))
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.usefixtures("matmul_precision")
def test_tf32_is_left_alone_without_it_or_off_fp32():
    torch.set_float32_matmul_precision("highest")
    assert set_matmul_precision(True, True, "gpu", cuda=fake_cuda((7, 5))) is None  # V100, T4
    assert set_matmul_precision(True, False, "gpu", cuda=fake_cuda((8, 0))) is None  # mixed precision
    assert set_matmul_precision(True, True, "cpu", cuda=fake_cuda((8, 0))) is None
    assert torch.get_float32_matmul_precision() == "highest"
