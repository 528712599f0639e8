"""Glue between Hydra entry points and our run functions: clean errors for fixable input."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from glue_lora.utils.errors import GlueLoraError, config_error_paragraph
from glue_lora.utils.quiet import silence_known_warnings


def run_and_report(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call ``fn(cfg)``; a fixable error in a single run is printed as one paragraph, exit code 2.

    In a multirun the error is re-raised so that Hydra records the job as failed and goes on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    silence_known_warnings()
    try:
        return fn(cfg)
    except GlueLoraError as err:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def exit_2_on_config_errors(main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` function; a command line Hydra cannot compose exits 2, one paragraph.

    Hydra reports an unknown group option (``hparams_search=nope``), an override of a key the config
    lacks or an override it cannot parse over several lines and exits 1, the code of a run that
    failed. Hydra has no hook for its own errors, so this wraps its private ``run_and_report`` for
    the duration of ``main``; ``HYDRA_FULL_ERROR=1`` still shows Hydra's traceback.
    """
    import hydra._internal.utils as hydra_internals

    hydra_report = hydra_internals.run_and_report

    def report(func: Callable[[], Any]) -> Any:
        return hydra_report(lambda: _exit_2_on_config_error(func))

    hydra_internals.run_and_report = report
    try:
        main()
    finally:
        hydra_internals.run_and_report = hydra_report


def _exit_2_on_config_error(func: Callable[[], Any]) -> Any:
    from hydra.errors import ConfigCompositionException, OverrideParseException

    try:
        return func()
    except (ConfigCompositionException, OverrideParseException) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {config_error_paragraph(err)}", file=sys.stderr)
        sys.exit(2)
