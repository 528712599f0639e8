"""The run's Lightning loggers (the ``logger`` group): each gets the resolved config; W&B runs of one
configuration share a group, end with a summary of the results, and never stop a run that cannot log.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from glue_lora.utils.ranks import is_rank_zero

log = logging.getLogger(__name__)


def run_group(task: str, model: str, method_label: str) -> str:
    """``<task>-<model>-<method>``, e.g. ``rte-roberta_base-r8-a16``: the seeds of one configuration
    (``settings.method.method_label``)."""
    return f"{task}-{model}-{method_label}"


def _is_wandb(obj: Any) -> bool:
    target = obj.get("_target_", "") if isinstance(obj, DictConfig) else type(obj).__name__
    return str(target).endswith("WandbLogger")


def build_loggers(logger_cfg: DictConfig | None, hparams: dict[str, Any], group: str, seed: int) -> list[Any]:
    """Instantiate every logger of the ``logger`` group and log ``hparams`` (the run's resolved
    config, secrets masked) to each. W&B runs are grouped by ``group`` and named ``<group>-seed<seed>``
    unless the logger's config names them."""
    from hydra.utils import instantiate

    loggers = []
    zero = is_rank_zero()
    for conf in (logger_cfg or {}).values():
        if _is_wandb(conf):
            # Only rank 0 starts a W&B run; the others keep an unstarted logger, as Lightning's do.
            logger = (
                _start_wandb(conf, group, seed)
                if zero
                else instantiate(conf, **_wandb_names(conf, group, seed))
            )
        else:
            logger = instantiate(conf)
        if logger is None:
            continue
        if zero:
            logger.log_hyperparams(hparams)
        loggers.append(logger)
    return loggers


def _wandb_names(conf: DictConfig, group: str, seed: int) -> dict[str, Any]:
    names: dict[str, Any] = {}
    if conf.get("group") is None:
        names["group"] = group
    if conf.get("name") is None:
        names["name"] = f"{names.get('group', conf.get('group'))}-seed{seed}"
    return names


def _start_wandb(conf: DictConfig, group: str, seed: int) -> Any | None:
    """A started WandbLogger; if W&B cannot start (no login, no network), an offline one; else None."""
    from hydra.utils import instantiate

    try:
        import wandb
    except ImportError:
        log.warning("W&B logging is off: wandb is not installed (pip install wandb); CSV logs are kept.")
        return None
    if wandb.run is not None:  # left open by an earlier run of this process that failed
        wandb.finish(exit_code=1)
    names = _wandb_names(conf, group, seed)
    attempts = [{}] if conf.get("mode") == "offline" else [{}, {"mode": "offline"}]
    for extra in attempts:
        try:
            logger = instantiate(conf, **names, **extra)
            logger.experiment  # noqa: B018  (starts the run now: a login problem shows before training)
            return logger
        except Exception as err:
            if wandb.run is not None:
                wandb.finish(exit_code=1)
            fallback = "logging offline instead" if not extra and len(attempts) > 1 else "W&B logging is off"
            log.warning(
                "W&B could not start (%s: %s); %s. CSV logs are kept.", type(err).__name__, err, fallback
            )
    return None


def wandb_summary(results: dict[str, Any]) -> dict[str, Any]:
    """What a W&B run's summary holds: the best dev metrics, parameter counts, throughput and memory."""
    from glue_lora.training.module import SPLIT_PREFIX, SPLIT_RESULT_KEY

    prefix = {SPLIT_RESULT_KEY[split]: SPLIT_PREFIX[split] for split in SPLIT_RESULT_KEY}
    summary: dict[str, Any] = {"best/score": results["score"], "best/metric": results["metric"]}
    for key, split_prefix in prefix.items():
        for name, value in (results.get(key) or {}).items():
            summary[f"best/{split_prefix}/{name}"] = value
    summary.update({f"best/{k}": v for k, v in (results.get("best") or {}).items()})
    for section in ("params", "train"):
        summary.update({f"{section}/{k}": v for k, v in (results.get(section) or {}).items()})
    return summary


def finish_loggers(loggers: list[Any], results: dict[str, Any]) -> None:
    """Close W&B runs with the results in their summary (call on global rank zero)."""
    for logger in loggers:
        if _is_wandb(logger):
            run = logger.experiment
            run.summary.update(wandb_summary(results))
            run.finish()
