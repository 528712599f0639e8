"""hparams_search=: an Optuna search through train.py -m on the fixture files (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import optuna
import pytest
import yaml

import glue_lora  # noqa: F401  (registers the resolvers the configs use)
from tests.helpers.callbacks import HANG_VARIABLE
from tests.helpers.runs import ROOT, TINY, compose_train, run_cli

ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def search(sweep_dir, glue_dir, token_cache, *overrides, name="lr", task="stsb", epochs="2"):
    """A search of TINY runs; ``epochs`` may be a range: a fixed value would take it out of the search."""
    tiny = [o for o in TINY if not o.startswith("trainer.max_epochs=")]
    return run_cli(
        "train.py",
        [
            f"hparams_search={name}",
            *tiny,
            f"trainer.max_epochs={epochs}",
            f"task={task}",
            "+task.val_fraction=0.5",  # 24 of the fixture's 48 rows held out
            f"paths.glue_dir={glue_dir}",
            f"data.cache_dir={token_cache}",
            f"hydra.sweep.dir={sweep_dir}",
            *overrides,
        ],
        env=ENV,
    )


def trials_of(sweep_dir, name="lr", task="stsb", method="lora"):
    study = optuna.load_study(
        study_name=f"{name}-{task}-{method}-seed0", storage=f"sqlite:///{sweep_dir}/optuna.db"
    )
    return study.get_trials()


def test_a_search_scores_held_out_rows_and_resumes_with_the_same_command(
    glue_fixtures, token_cache, tmp_path
):
    sweep = tmp_path / "search"
    done = search(sweep, glue_fixtures, token_cache, "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [t.number for t in trials_of(sweep)] == [0, 1]
    # a second start with a larger budget runs the missing trial only, numbered after the others
    done = search(sweep, glue_fixtures, token_cache, "hydra.sweeper.n_trials=3")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = trials_of(sweep)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    rates = [t.params["optimizer.lr"] for t in trials]
    assert len(set(rates)) == 3  # the resumed sampler does not draw the first start's rates again
    assert all(2e-4 <= lr <= 6e-3 for lr in rates)  # LoRA's range in conf/hparams_search/common.yaml
    for trial in trials:
        results = json.loads((sweep / str(trial.number) / "results.json").read_text())
        assert results["config"]["data"]["dev_from_train"] is True
        assert results["config"]["optimizer"]["lr"] == pytest.approx(trial.params["optimizer.lr"])
        assert results["score"] == pytest.approx(trial.value)  # the held-out score is the objective
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t.value for t in trials))
    assert list(best["best_params"]) == ["optimizer.lr"]
    table = (sweep / "trials.md").read_text()
    assert table.count("| COMPLETE |") == 3
    assert (sweep / "trials.png").stat().st_size > 0


def test_lr_epochs_and_lora_search_their_keys(glue_fixtures, token_cache, tmp_path):
    for name, keys in (
        ("lr_epochs", {"optimizer.lr", "trainer.max_epochs"}),
        ("lora", {"lora.r", "lora.alpha", "lora.dropout"}),
    ):
        sweep = tmp_path / name
        epochs = "int(interval(1,2))" if name == "lr_epochs" else "1"
        done = search(sweep, glue_fixtures, token_cache, "hydra.sweeper.n_trials=1", name=name, epochs=epochs)
        assert done.returncode == 0, done.stderr[-3000:]
        (trial,) = trials_of(sweep, name=name)
        assert set(trial.params) == keys
        config = json.loads((sweep / "0" / "results.json").read_text())["config"]
        for key, value in trial.params.items():
            group, setting = key.split(".")
            assert config[group][setting] == pytest.approx(value)


@pytest.mark.parametrize(
    ("overrides", "task", "message"),
    [
        (
            ["optimizer.lrr=interval(1e-4,1e-3)"],
            "stsb",
            "names optimizer.lrr, which the config does not have",
        ),
        (["data.dev_from_train=false"], "stsb", "would tune on the dev set"),
        (["task.val_fraction=0.05"], "stsb", "The search holds out 2 of stsb's train rows"),
        ([], "mnli", "data.dev_from_train=true is not available for mnli"),
    ],
)
def test_bad_input_to_a_search_is_one_paragraph_and_exit_2(
    overrides, task, message, glue_fixtures, token_cache, tmp_path
):
    done = search(
        tmp_path / "search", glue_fixtures, token_cache, "hydra.sweeper.n_trials=1", *overrides, task=task
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_search_lists_the_searches():
    done = run_cli("train.py", ["hparams_search=nope"])
    assert done.returncode == 2, done.stderr
    assert "error: hparams_search=nope is unknown: there is no conf/hparams_search/nope.yaml" in done.stderr
    assert "lr_epochs" in done.stderr


@pytest.mark.parametrize("method", ["lora", "vera", "bitfit", "head_only", "full", "loraplus"])
def test_the_learning_rate_range_is_the_methods(method):
    cfg = compose_train(["hparams_search=lr", f"method={method}"])
    table = cfg.hparams_search.lr_ranges
    assert dict(cfg.hparams_search.lr_range) == dict(table[method])
    assert cfg.data.dev_from_train is True


def test_every_method_has_a_learning_rate_range_of_the_same_width():
    from tests.helpers.runs import CONF

    cfg = compose_train(["hparams_search=lr"])
    methods = {p.stem for p in (CONF / "method").glob("*.yaml")}
    assert set(cfg.hparams_search.lr_ranges) == methods
    for entry in cfg.hparams_search.lr_ranges.values():
        assert entry.high / entry.low == pytest.approx(30)


@pytest.mark.slow  # a search killed in its second trial, then started again: about two minutes
def test_a_killed_search_runs_the_killed_trials_parameters_again(glue_fixtures, token_cache, tmp_path):
    sweep = tmp_path / "search"
    args = [
        "hparams_search=lr",
        *[o for o in TINY if not o.startswith("trainer.max_epochs=")],
        "trainer.max_epochs=4",
        "task=stsb",
        "+task.val_fraction=0.5",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=2",
        # the first start blocks in trial 1, however fast the machine, until it is killed
        "+callbacks.hang._target_=tests.helpers.callbacks.HangAtStep",
        "+callbacks.hang.step=1",
        "+callbacks.hang.rank=0",
        "+callbacks.hang.job='1'",
    ]
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env={**os.environ, **ENV, HANG_VARIABLE: "1"},
    )
    deadline = time.time() + 300
    while not (sweep / "1" / "train.log").exists() and time.time() < deadline:
        time.sleep(1)
    time.sleep(5)  # into its training, where it blocks
    first.kill()  # SIGKILL in trial 1: no clean-up, the trial stays RUNNING in the study
    first.wait()
    assert [t.state.name for t in trials_of(sweep)] == ["COMPLETE", "RUNNING"]

    done = run_cli("train.py", args, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = trials_of(sweep)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params  # the killed trial's rate, run again
