"""Glue between Hydra entry points and our run functions: clean errors for fixable input."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from glue_lora.utils.errors import GlueLoraError
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
