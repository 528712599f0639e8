"""hydra-optuna-sweeper's sweeper with a search loop that a killed search can resume.

The plugin's own loop (hydra_plugins/hydra_optuna_sweeper/_impl.py, 1.3) falls short for a search
that runs for hours on a CPU: a second start runs ``n_trials`` more trials and numbers its jobs from
0 again (into the directories of the first start's jobs); the job is not told which trial it is, so
it cannot report to the pruner; and a trial that the pruner stopped is recorded as finished. Here
``n_trials`` is the study's total, the trials the study holds count towards it, each job runs in
``<sweep dir>/<trial number>`` with ``hparams_search.trial=<number>`` in its config, a trial killed
with the search is run again with its parameters, and a pruned trial is told PRUNED. The plugin's
parsing of the search space, its sampler and storage settings are used as they are.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf

from glue_lora.search.study import PRUNED_AT_STEP, WORKER, ensure_sqlite_dir, fail_killed_trials, worker_id
from glue_lora.search.trials import RESULTS_YAML, write_trials
from glue_lora.utils.errors import ConfigError, GlueLoraError

log = logging.getLogger(__name__)

TRIAL_KEY = "hparams_search.trial"


def check_search_space(config: DictConfig, keys: list[str]) -> None:
    """Every searched key must exist in the config: a typo would otherwise add a key nothing reads."""
    for key in keys:
        if key.startswith("+"):
            continue  # added on purpose
        if OmegaConf.select(config, key, default=_MISSING) is _MISSING:
            raise ConfigError(
                f"The search space names {key}, which the config does not have, so no trial would "
                f"change anything. Check the spelling in hydra.sweeper.params (or in the "
                f"hparams_search file), or write +{key} if the key is new on purpose."
            )


_MISSING = object()


class SearchSweeperImpl(OptunaSweeperImpl):
    def __init__(self, **settings: Any) -> None:
        settings.pop("_target_", None)
        super().__init__(**settings)

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except GlueLoraError as err:  # the search's or a trial's bad input: one paragraph, exit 2
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def _sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        self._process_searchspace_config()
        params_conf = [*self._parse_sweeper_params_config(), *arguments]
        distributions, fixed = create_params_from_overrides(params_conf)
        for name in fixed:
            distributions.pop(name, None)
        if not distributions:
            raise ConfigError(
                "The search has nothing to search: hydra.sweeper.params names no range or choice. Use "
                "hparams_search=lr, lr_epochs or lora, or give the ranges in hydra.sweeper.params."
            )
        check_search_space(self.config, list(distributions))
        if isinstance(self.sampler, functools.partial):  # hydra/sweeper/sampler=grid: every choice once
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        ensure_sqlite_dir(self.storage)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        if study.trials:
            # A resumed search: the sampler seeded as at the first start would draw that start's
            # values again; seeded past the trials it holds, it draws the next ones.
            study.sampler = self._sampler_seeded_after(len(study.trials))
        for params in fail_killed_trials(study):
            log.info("Trial killed with an earlier start, run again: %s", params)
            study.enqueue_trial(params)
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        done = len(study.get_trials(deepcopy=False, states=counted))
        log.info(
            "Study %s in %s: %d of %d trials done or running",
            study.study_name,
            self.storage,
            done,
            self.n_trials,
        )
        while (left := self.n_trials - len(study.get_trials(deepcopy=False, states=counted))) > 0:
            trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            for trial in trials:
                trial.set_user_attr(WORKER, worker_id())
            overrides = [
                (*params, f"{TRIAL_KEY}={trial.number}")
                for params, trial in zip(
                    self._configure_trials(trials, distributions, fixed), trials, strict=True
                )
            ]
            returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            # Read again: the study object caches the trials it asked for, so it would not see the
            # held-out scores and the pruning that their jobs wrote to the storage.
            study = optuna.load_study(
                study_name=study.study_name, storage=self.storage, sampler=study.sampler
            )
            failures = [self._tell(study, trial, ret) for trial, ret in zip(trials, returns, strict=True)]
            write_trials(study, sweep_dir, list(distributions))
            errors = [f for f in failures if f is not None]
            if len(errors) / len(returns) > self.max_failure_rate:
                for ret in returns:
                    ret.return_value  # noqa: B018  (re-raises the job's error, with its traceback)
        self._write_results(study, sweep_dir)

    def _sampler_seeded_after(self, n_trials: int) -> Any:
        from hydra.utils import instantiate

        sampler = self.config.hydra.sweeper.sampler
        if sampler.get("seed") is None:
            return self.sampler
        return instantiate(sampler, seed=int(sampler.seed) + n_trials)

    @staticmethod
    def _tell(study: Any, trial: Any, ret: Any) -> Exception | None:
        from optuna.trial import TrialState

        try:
            value = float(ret.return_value)
        except Exception as err:
            study.tell(trial.number, state=TrialState.FAIL)
            log.warning("Trial %d failed: %s", trial.number, err)
            return err
        state = (
            TrialState.PRUNED
            if PRUNED_AT_STEP in study.trials[trial.number].user_attrs
            else TrialState.COMPLETE
        )
        try:
            study.tell(trial.number, state=state, values=None if state == TrialState.PRUNED else [value])
        except RuntimeError as err:
            # GridSampler stops the study when its grid is done; outside optimize() that raises, after
            # the trial is recorded (the plugin's loop ignores it the same way).
            if "Study.stop" not in str(err):
                raise
        return None

    @staticmethod
    def _write_results(study: Any, sweep_dir: Path) -> None:
        # The plugin's file, as its loop writes it: the best trial's parameters and value.
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info("Best parameters: %s, value %s", best.params, best.value)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_YAML)
