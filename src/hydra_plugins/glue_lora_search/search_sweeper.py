"""The Hydra plugin of ``hparams_search=``: Hydra loads sweepers from the hydra_plugins package only,
so the class lives here and hands its work to glue_lora.search.sweeper (as hydra-optuna-sweeper's
own plugin hands it to its _impl module)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SearchSweeper(Sweeper):
    """hydra-optuna-sweeper's settings (``hydra/sweeper: optuna``) with a resumable search loop."""

    def __init__(self, **settings: Any) -> None:
        from glue_lora.search.sweeper import SearchSweeperImpl

        self.sweeper = SearchSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
