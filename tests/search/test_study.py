"""The study as the sweeper and its jobs share it: killed trials, pruning from inside a job."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from glue_lora.search.pruning import PruneTrial
from glue_lora.search.study import PRUNED_AT_STEP, WORKER, fail_killed_trials, worker_id


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path}/optuna.db"


def test_a_trial_whose_process_died_is_failed_and_its_parameters_returned(storage):
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dead = study.ask({"optimizer.lr": optuna.distributions.LogUniformDistribution(1e-4, 1e-2)})
    dead.set_user_attr(WORKER, f"{socket.gethostname()}:999999999:1")  # no such process
    host, pid, started = worker_id().split(":")
    reused = study.ask()  # a killed process whose pid a later one got (this one)
    reused.set_user_attr(WORKER, f"{host}:{pid}:{int(started) - 1}")
    alive = study.ask()
    alive.set_user_attr(WORKER, worker_id())  # this process: still running
    elsewhere = study.ask()
    elsewhere.set_user_attr(WORKER, "another-host:1")  # another machine's: not ours to judge

    killed = fail_killed_trials(optuna.load_study(study_name="s", storage=storage))

    assert killed == [dead.params, reused.params]
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]


def _job_side(storage, number, score, total_steps=18, **switches):
    """The job's view: a module with one more evaluation (at step 12 of total_steps), a trainer on
    one process."""
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2)
    callback = PruneTrial(storage, "s", number, pruner=pruner, **switches)
    module = SimpleNamespace(
        history=[
            {"epoch": 0, "step": 6, "dev": {"pearson": 0.5}},
            {"epoch": 1, "step": 12, "dev": {"pearson": score}},
        ],
        spec=SimpleNamespace(primary_metric="pearson"),
    )
    trainer = SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        should_stop=False,
        global_step=12,
        estimated_stepping_batches=total_steps,
        strategy=SimpleNamespace(broadcast=lambda value, src=0: value),
    )
    callback.on_validation_end(trainer, module)
    return trainer.should_stop


def _study_with_two_finished_trials(storage):
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (0.8, 0.9):
        trial = study.ask()
        trial.report(value, step=1)
        study.tell(trial, value)
    return study


def test_a_trial_below_the_median_stops_and_is_marked_for_the_sweeper(storage):
    study = _study_with_two_finished_trials(storage)  # each with a held-out score at evaluation 1
    good, bad = study.ask(), study.ask()

    assert _job_side(storage, good.number, 0.95) is False
    assert _job_side(storage, bad.number, 0.1) is True
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[bad.number].user_attrs[PRUNED_AT_STEP] == 12
    assert trials[bad.number].intermediate_values == {1: 0.1}
    assert PRUNED_AT_STEP not in trials[good.number].user_attrs


def test_the_last_evaluation_never_prunes_unless_asked(storage):
    study = _study_with_two_finished_trials(storage)
    spared, stopped = study.ask(), study.ask()

    assert _job_side(storage, spared.number, 0.1, total_steps=12) is False
    assert _job_side(storage, stopped.number, 0.1, total_steps=12, prune_last_evaluation=True) is True
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[spared.number].intermediate_values == {1: 0.1}  # reported all the same
    assert PRUNED_AT_STEP not in trials[spared.number].user_attrs


def test_pruning_switched_off_reports_nothing(storage):
    optuna.create_study(study_name="s", storage=storage)
    callback = PruneTrial(storage, "s", 0, enabled=False)
    trainer = SimpleNamespace(sanity_checking=False, should_stop=False)
    callback.on_validation_end(trainer, SimpleNamespace(history=[{}]))
    assert trainer.should_stop is False
