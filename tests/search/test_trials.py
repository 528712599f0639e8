"""trials.md: one row per trial of a study."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

from optuna.distributions import LogUniformDistribution
from optuna.trial import FrozenTrial, TrialState

from glue_lora.search.trials import trials_table


def _trial(number: int, state: TrialState, value: float | None, minutes: float) -> FrozenTrial:
    start = datetime.datetime(2026, 12, 7, 6, 0)
    return FrozenTrial(
        number=number,
        state=state,
        value=value,
        datetime_start=start,
        datetime_complete=start + datetime.timedelta(minutes=minutes),
        params={"optimizer.lr": 1e-3},
        distributions={"optimizer.lr": LogUniformDistribution(1e-4, 1e-2)},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def test_the_table_gives_minutes_of_finished_trials_only():
    done = _trial(0, TrialState.COMPLETE, 0.8, minutes=6.3)
    # a killed trial is marked FAIL when its search starts again, here 50 minutes after it began
    killed = _trial(1, TrialState.FAIL, None, minutes=50.0)
    study = SimpleNamespace(best_trial=done, get_trials=lambda deepcopy: [done, killed])

    rows = trials_table(study, ["optimizer.lr"]).splitlines()[2:]

    assert rows == ["| 0 | COMPLETE | **80.00** | 0.001 |  | 6.3 |", "| 1 | FAIL |  | 0.001 |  |  |"]
