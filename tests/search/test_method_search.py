"""experiment=method_search (every method's search) and method_comparison_tuned (the cells at the
searched rates), composed only; nothing is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import glue_lora  # noqa: F401  (registers the resolvers the configs use)
from glue_lora.search.comparison import KEPT, SEARCH_LOG, threads_per_search
from glue_lora.search.trials import RESULTS_YAML, TRIALS_MD, TRIALS_PNG
from glue_lora.settings.resolvers import searched
from glue_lora.utils.errors import ConfigError
from glue_lora.utils.run_files import FAILED
from tests.helpers.runs import CONF, TINY, compose_train


@pytest.mark.parametrize(("method", "epochs"), [("lora", 5), ("vera", 5), ("full", 3)])
def test_every_method_gets_the_same_search_at_the_tables_epochs(method, epochs):
    cfg = compose_train(["experiment=method_search", f"method={method}", "task=stsb"])
    assert cfg.hparams_search.name == "lr"
    assert cfg.model.name == "minilm"
    assert cfg.trainer.max_epochs == epochs
    assert cfg.data.dev_from_train is True
    assert dict(cfg.hparams_search.lr_range) == dict(cfg.hparams_search.lr_ranges[method])
    # as the committed searches ran; any other search spares the last evaluation
    assert cfg.callbacks.prune_trial.prune_last_evaluation is True
    other = compose_train(["hparams_search=lr", f"method={method}", "task=stsb"])
    assert other.callbacks.prune_trial.prune_last_evaluation is False


def _root(method, task):
    return compose_train(["experiment=method_comparison", f"method={method}", f"task={task}"])


def test_the_tuned_cells_read_each_methods_searched_rate(tmp_path):
    for method, lr in (("vera", 0.02), ("full", 3e-4)):
        (tmp_path / "mrpc" / method).mkdir(parents=True)
        results = {"name": "optuna", "best_params": {"optimizer.lr": lr}, "best_value": 0.8}
        OmegaConf.save(OmegaConf.create(results), tmp_path / "mrpc" / method / "optimization_results.yaml")
    assert searched(str(tmp_path), "optimizer.lr", _root_=_root("vera", "mrpc")) == 0.02
    assert searched(str(tmp_path), "optimizer.lr", _root_=_root("full", "mrpc")) == 3e-4
    with pytest.raises(ConfigError, match=r"no searched optimizer.lr for task=stsb method=vera"):
        searched(str(tmp_path), "optimizer.lr", _root_=_root("vera", "stsb"))


def test_the_tuned_experiment_is_the_comparison_with_the_searched_rate():
    cfg = compose_train(["experiment=method_comparison_tuned"])
    assert OmegaConf.to_container(cfg.optimizer, resolve=False)["lr"].startswith("${searched:")
    assert cfg.trainer.max_epochs == 5  # the comparison's epochs
    assert cfg.data.dev_from_train is False  # the cells are scored on the real dev set
    tuned = OmegaConf.load(CONF / "experiment" / "method_comparison_tuned.yaml")
    assert "method_comparison" in tuned.defaults  # its sweep: tasks x methods x seeds 0-2


def test_method_search_runs_each_methods_search_and_keeps_its_files(
    glue_fixtures, token_cache, tmp_path, capsys
):
    from glue_lora.search.comparison import comparison_grid, main

    tasks, methods = comparison_grid()
    assert tasks == ["mrpc", "stsb"] and len(methods) == 10 and methods[0] == "lora"
    sweeps, results = tmp_path / "sweeps", tmp_path / "results"
    overrides = [*TINY, "trainer.max_epochs=1", "hydra.sweeper.n_trials=1", "+task.val_fraction=0.5"]
    overrides += [f"paths.glue_dir={glue_fixtures}", f"data.cache_dir={token_cache}"]
    args = ["--tasks", "stsb", "--methods", "lora", "bitfit", "--sweeps", str(sweeps)]
    args += ["--results", str(results)]

    # both searches at once: each one's output in its sweep dir, each on its share of the cores
    assert main([*args, "--jobs", "2", *overrides]) == 0
    for method in ("lora", "bitfit"):
        assert sorted(p.name for p in (results / "stsb" / method).iterdir()) == sorted(KEPT)
        assert (sweeps / "stsb" / method / "optuna.db").is_file()
        assert "trainable" in (sweeps / "stsb" / method / SEARCH_LOG).read_text()
        trial = json.loads((sweeps / "stsb" / method / "0" / "results.json").read_text())
        assert trial["provenance"]["hardware"]["torch_threads"] == threads_per_search(2)
    out = capsys.readouterr().out
    assert "stsb   bitfit     optimizer.lr=" in out and f"output in {SEARCH_LOG}" in out
    # a bad override fails the first search with exit 2 and stops: every search would fail alike
    args[args.index(str(sweeps))] = str(tmp_path / "other_sweeps")
    assert main([*args, *overrides, "data.batch_size=0"]) == 2
    assert "stsb   lora       failed (exit 2)" in capsys.readouterr().err
    assert not (tmp_path / "other_sweeps" / "stsb" / "bitfit").exists()


def test_method_search_refuses_one_sweep_dir_for_every_search_and_no_jobs(capsys):
    from glue_lora.search.comparison import main

    assert main(["hydra.sweep.dir=/tmp/x"]) == 2
    assert "use --sweeps" in capsys.readouterr().err
    assert main(["--jobs", "0"]) == 2
    assert "give 1 or more" in capsys.readouterr().err


def test_concurrent_searches_share_the_cores_out_as_threads():
    assert [threads_per_search(jobs, cores=16) for jobs in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]


def _fake_search(monkeypatch, returncode, writes_results):
    """train.py's place: a sweep that may write the study's results, then exits with returncode."""
    import subprocess

    from glue_lora.search import comparison

    def run(command, **kwargs):
        sweep = Path(next(a for a in command if a.startswith("hydra.sweep.dir=")).split("=", 1)[1])
        if writes_results:
            results = {"name": "optuna", "best_params": {"optimizer.lr": 1e-3}, "best_value": 0.8}
            OmegaConf.save(OmegaConf.create(results), sweep / RESULTS_YAML)
            for name in (TRIALS_MD, TRIALS_PNG):
                (sweep / name).write_text(name)
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(comparison.subprocess, "run", run)


def test_a_search_that_finished_beside_a_failed_trial_is_kept(monkeypatch, tmp_path):
    from glue_lora.search.comparison import run_search

    sweeps, results = tmp_path / "sweeps", tmp_path / "results"
    (sweeps / "mrpc" / "full" / "6").mkdir(parents=True)
    (sweeps / "mrpc" / "full" / "6" / FAILED).write_text("{}")  # left by an earlier start
    _fake_search(monkeypatch, returncode=0, writes_results=True)  # the sweep's end only warns of it

    outcome = run_search("mrpc", "full", [], sweeps, results)

    assert outcome.returncode == 0
    assert "optimizer.lr=0.001, held-out 0.8000" in outcome.best and "trial 6" in outcome.best
    assert sorted(p.name for p in (results / "mrpc" / "full").iterdir()) == sorted(KEPT)


def test_a_search_that_stopped_before_its_results_is_failed(monkeypatch, tmp_path):
    from glue_lora.search.comparison import run_search

    sweeps, results = tmp_path / "sweeps", tmp_path / "results"
    (sweeps / "mrpc" / "full").mkdir(parents=True)
    (sweeps / "mrpc" / "full" / RESULTS_YAML).write_text("best_value: 0.5\n")  # an earlier run's
    _fake_search(monkeypatch, returncode=1, writes_results=False)

    outcome = run_search("mrpc", "full", [], sweeps, results)

    assert outcome.returncode == 1 and outcome.best.startswith("failed (exit 1)")
    assert not (results / "mrpc" / "full").exists()
