"""The paper's recipes: selected by model+task, equal to the reference, overridable, with a fallback."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from glue_lora.settings.recipes import describe_recipe
from glue_lora.train import run
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import ROOT, compose_train, run_cli

# The project's reference facts live beside the repository (CI: a clean clone with ../shared beside it).
REFERENCE = Path(
    os.environ.get("LORA_PAPER_REFERENCE", ROOT / ".." / "shared" / "reference" / "lora_paper.yaml")
)
MODELS = ("roberta_base", "roberta_large", "deberta_v2_xxl")
TASKS = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")
PRECISION = {"fp32": "32-true", "fp16": "16-mixed"}


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is absent (set LORA_PAPER_REFERENCE to the reference file)")
    return yaml.safe_load(REFERENCE.read_text())["recipes"]


@pytest.mark.parametrize("model", MODELS)
def test_every_recipe_matches_the_reference(model, reference, tmp_path):
    recipes = reference[model]
    for task in TASKS:
        want = {**recipes.get("common", {}), **recipes[task]}
        cfg = compose_train([f"model={model}", f"task={task}", f"paths.adapters_dir={tmp_path}"], tmp_path)
        where = f"{model}/{task}"
        assert cfg.recipe == where
        assert cfg.optimizer.lr == pytest.approx(want["lr"]), where
        assert cfg.data.batch_size == want["batch"], where
        assert cfg.trainer.max_epochs == want["epochs"], where
        assert cfg.data.max_length == want["max_len"], where
        assert cfg.optimizer.weight_decay == pytest.approx(want.get("weight_decay", 0.0)), where
        if "warmup_steps" in want:
            assert (cfg.schedule.warmup_steps, cfg.schedule.warmup_ratio) == (want["warmup_steps"], 0.0)
        else:
            assert (cfg.schedule.warmup_steps, cfg.schedule.warmup_ratio) == (0, want["warmup_ratio"])
        assert (cfg.lora.r, cfg.lora.alpha) == (recipes["lora"]["r"], recipes["lora"]["alpha"]), where
        assert cfg.trainer.precision == PRECISION[want.get("precision", "fp32")], where
        assert cfg.deterministic is bool(want.get("deterministic", False)), where
        assert cfg.model.cls_dropout == want.get("cls_dropout"), where
        if want.get("mnli_init"):
            assert cfg.init_adapter == f"{tmp_path}/{model}/mnli", where
        else:
            assert cfg.init_adapter is None, where
        if model == "deberta_v2_xxl":  # evaluation every N optimizer steps, counted across epochs
            assert isinstance(cfg.trainer.val_check_interval, int), where
            assert cfg.trainer.check_val_every_n_epoch is None, where
        else:  # evaluation once per epoch
            assert (cfg.trainer.val_check_interval, cfg.trainer.check_val_every_n_epoch) == (1.0, 1), where


def test_every_recipe_file_is_a_known_pair():
    files = {f"{p.parent.name}/{p.stem}" for p in (ROOT / "conf" / "recipe").glob("*/*.yaml")}
    # The paper's 24 pairs, and the embedded default's own recipes (make train; experiment=glue_minilm).
    embedded = {f"minilm/{task}" for task in ("sst2", "mrpc", "cola", "stsb", "rte", "wnli")}
    assert files == {f"{m}/{t}" for m in MODELS for t in TASKS} | embedded


def test_full_fine_tuning_picks_the_recipes_own_values():
    lora = compose_train(["task=cola"])
    assert (lora.optimizer.lr, lora.trainer.max_epochs) == (1e-3, 10)
    for choice in (["lora=none"], ["variant=full"], ["method=full"]):
        full = compose_train(["task=cola", *choice])
        assert full.lora is None and (full.optimizer.lr, full.trainer.max_epochs) == (1e-4, 3), choice
    assert compose_train(["task=cola", "lora=none", "optimizer.lr=3e-5"]).optimizer.lr == 3e-5


def test_cfg_job_shows_the_recipe_and_the_command_line_wins():
    shown = run_cli("train.py", ["model=roberta_base", "task=rte", "--cfg", "job"], timeout=120)
    assert shown.returncode == 0, shown.stderr
    cfg = yaml.safe_load(shown.stdout)
    assert cfg["recipe"] == "roberta_base/rte"
    assert (cfg["optimizer"]["lr"], cfg["data"]["batch_size"], cfg["trainer"]["max_epochs"]) == (5e-4, 32, 80)
    assert cfg["data"]["max_length"] == 512
    assert cfg["init_adapter"].endswith("/roberta_base/mnli")

    overridden = run_cli(
        "train.py",
        ["model=roberta_base", "task=rte", "optimizer.lr=1e-3", "trainer.max_epochs=2", "--cfg", "job"],
        timeout=120,
    )
    cfg = yaml.safe_load(overridden.stdout)
    assert (cfg["optimizer"]["lr"], cfg["trainer"]["max_epochs"], cfg["data"]["batch_size"]) == (1e-3, 2, 32)


def test_lora_choice_on_the_command_line_wins_over_the_recipe(tmp_path):
    assert compose_train(["model=deberta_v2_xxl", "task=sst2"]).lora.r == 16
    r8 = compose_train(["model=deberta_v2_xxl", "task=sst2", "lora=r8"])
    assert (r8.lora.r, r8.lora.alpha) == (8, 16)
    assert compose_train(["model=deberta_v2_xxl", "task=sst2", "lora=none"]).lora is None
    assert compose_train(["model=deberta_v2_xxl", "task=sst2", "lora.r=4"]).lora.r == 4


def test_a_pair_without_recipe_uses_the_generic_defaults_and_says_so(tmp_path, caplog):
    cfg = compose_train(["model=tiny_roberta", "task=rte", "dry_run=true"], tmp_path)
    generic = compose_train(["model=tiny_roberta", "task=sst2"])
    assert cfg.recipe is None and cfg.init_adapter is None
    assert (cfg.optimizer.lr, cfg.data.batch_size, cfg.trainer.max_epochs) == (
        generic.optimizer.lr,
        generic.data.batch_size,
        generic.trainer.max_epochs,
    )
    with caplog.at_level(logging.INFO, logger="glue_lora"):
        run(cfg)
    assert "No recipe for model=tiny_roberta task=rte" in caplog.text
    assert "generic defaults" in caplog.text
    assert "Recipe roberta_base/rte" in describe_recipe(
        compose_train(["model=roberta_base", "task=rte"]).recipe, "roberta_base", "rte"
    )


def test_a_recipe_that_starts_from_mnli_says_how_to_get_the_adapter(tmp_path):
    cfg = compose_train(
        ["model=roberta_base", "task=rte", f"paths.adapters_dir={tmp_path}"], tmp_path / "run"
    )
    with pytest.raises(ConfigError) as err:
        run(cfg)  # fails before any model is built or downloaded
    message = str(err.value)
    assert f"init_adapter={tmp_path}/roberta_base/mnli" in message
    assert "python train.py model=roberta_base task=mnli" in message
    assert "init_adapter=null" in message
    assert "glue-lora import-loralib" in message
