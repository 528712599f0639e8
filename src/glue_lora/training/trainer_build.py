"""The ``lightning.Trainer`` from the ``trainer`` group, its refusals turned into one paragraph.

The ``trainer`` group is passed to ``lightning.Trainer`` as given, so any of its arguments can be
set; the values only Lightning checks (a strategy name, ``max_time``, a device count, a GPU that is
not there) would otherwise end in Hydra's instantiation error.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from glue_lora.utils.errors import ConfigError


def build_trainer(trainer_cfg: DictConfig, **arguments: Any) -> Any:
    """``instantiate(trainer_cfg, **arguments)``; a refused setting raises ``ConfigError``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(trainer_cfg, **arguments)
    except InstantiationException as err:
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:400]
        raise ConfigError(
            f"lightning.Trainer refused the trainer settings ({type(cause).__name__}: {first}). Fix the "
            "trainer.<argument> it names, on the command line or in conf/trainer/ (every trainer.* "
            "value is passed to lightning.Trainer as given)."
        ) from None
