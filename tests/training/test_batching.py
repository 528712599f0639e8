"""The reference's global batch on any device count: accumulated on fewer devices, shared on more."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from glue_lora.training.batching import plan_batches, trainer_settings
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import CONF, run_cli

PAPER_MODELS = ("roberta_base", "roberta_large", "deberta_v2_xxl")
PAPER_RECIPES = sorted(
    (model, path.stem) for model in PAPER_MODELS for path in (CONF / "recipe" / model).glob("*.yaml")
)
DEVICE_COUNTS = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def recipe_plans():
    """(model, task) -> {devices: (the recipe's data group, the batch plan of a DDP run on them)}

    Composed once per recipe (trainer=ddp); the subprocess test below composes trainer.devices=8.
    """
    plans = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for model, task in PAPER_RECIPES:
            cfg = compose(config_name="train", overrides=[f"model={model}", f"task={task}", "trainer=ddp"])
            for devices in DEVICE_COUNTS:
                trainer = {**trainer_settings(cfg.trainer), "devices": devices}
                plan = plan_batches(cfg.data.batch_size, cfg.data.global_batch_size, trainer)
                plans.setdefault((model, task), {})[devices] = (cfg.data, plan)
    return plans


def test_every_paper_recipe_has_a_global_batch():
    assert len(PAPER_RECIPES) == 24  # 8 GLUE tasks x 3 models


@pytest.mark.parametrize(("model", "task"), PAPER_RECIPES)
def test_every_paper_recipe_trains_at_its_global_batch_on_1_2_4_8_devices(recipe_plans, model, task):
    for devices, (data, plan) in recipe_plans[(model, task)].items():
        assert plan.devices == devices
        assert plan.global_batch == data.global_batch_size, (devices, plan)
        assert plan.per_device <= data.batch_size
        lowered = plan.per_device < data.batch_size
        assert lowered == (data.batch_size * devices > data.global_batch_size)
        assert ("lowered to" in plan.describe()) == lowered


def test_on_more_devices_than_the_reference_the_per_device_batch_is_lowered():
    # roberta_base/cola: the reference's 2 GPUs x 32 = 64; on 8 devices 8 each, no accumulation
    plan = plan_batches(32, 64, {"devices": 8, "accelerator": "cpu"})
    assert (plan.per_device, plan.devices, plan.accumulation, plan.global_batch) == (8, 8, 1, 64)
    assert "data.batch_size=32 lowered to 8 per device" in plan.describe()
    # on the reference's own count nothing changes
    assert "lowered" not in plan_batches(32, 64, {"devices": 2}).describe()


def test_only_a_global_batch_the_devices_cannot_share_is_refused():
    with pytest.raises(ConfigError, match=r"cannot be shared evenly by 3 devices.*trainer\.devices"):
        plan_batches(32, 64, {"devices": 3})
    with pytest.raises(ConfigError, match="not a multiple"):
        plan_batches(48, 128, {"devices": 1})
    assert plan_batches(8, 48, {"devices": 3}).accumulation == 2  # 8 x 3 x 2


def test_train_py_dry_runs_roberta_base_cola_on_8_ddp_devices(tmp_path):
    args = [
        "model=roberta_base",
        "task=cola",
        "trainer.devices=8",
        "trainer.strategy=ddp",
        "dry_run=true",
        f"hydra.run.dir={tmp_path}",
    ]
    done = run_cli("train.py", args, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "effective batch size 64 (per device 8 x 8 device(s) x 1 accumulation step(s))" in done.stdout
    assert "data.batch_size=32 lowered to 8 per device" in done.stdout
    refused = run_cli("train.py", [*args[:2], "trainer.devices=3", *args[3:]], timeout=120)
    assert refused.returncode == 2
    assert "cannot be shared evenly by 3 devices" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_run_trains_at_the_lowered_per_device_batch(glue_fixtures, token_cache, tmp_path, capsys):
    from glue_lora.train import run
    from tests.helpers.runs import compose_tiny_run

    # data.batch_size=8 on one device is above data.global_batch_size=4: 4 per step, no accumulation
    overrides = ["task=rte", "data.global_batch_size=4", "trainer.max_epochs=1"]
    results = run(compose_tiny_run(glue_fixtures, token_cache, tmp_path, overrides))
    assert "data.batch_size=8 lowered to 4 per device" in capsys.readouterr().out
    assert [entry["step"] for entry in results["history"]] == [12]  # 48 rows / 4, not / 8


def test_a_device_list_in_the_config_counts_its_devices():
    # trainer.devices=[0,1] reaches the plan as a ListConfig: two devices, not one
    from omegaconf import OmegaConf

    from glue_lora.training.batching import count_devices, trainer_settings

    trainer = OmegaConf.create({"devices": [0, 1], "accelerator": "gpu", "precision": "${oc.env:UNSET}"})
    assert trainer_settings(trainer) == {"devices": [0, 1], "accelerator": "gpu"}
    assert count_devices(trainer_settings(trainer)) == 2
