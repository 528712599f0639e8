"""Known third-party warnings and log handlers that are not the user's business, silenced so that a
new warning stands out and every log line shows once.

Each entry is a warning some library we depend on raises on every run, about its own code or
another library's, that no setting of ours can avoid; pyproject.toml's pytest ``filterwarnings``
lists the same messages. Anything else still shows.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, why it is not the user's business)
KNOWN_WARNINGS: tuple[tuple[str, str], ...] = (
    (
        r"`is_gradient_checkpointing` is deprecated",
        "peft reads a transformers attribute deprecated in transformers 5 (get_peft_model)",
    ),
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "Lightning's pytree helper on a newer torch",
    ),
    (
        r"You are using a custom batch sampler `EpochBatchSampler` for prediction",
        "our length-grouped sampler returns every row at prediction (tested); Lightning cannot tell",
    ),
    (
        r"lora with eva initialization used with low_cpu_mem_usage=False",
        "peft's memory hint for EVA on large language models; our encoders build in full (method=eva)",
    ),
    (
        r"Full backward hook is firing when gradients are computed with respect to module outputs",
        "peft's LoRA-GA counts backward passes with hooks on frozen layers (method=lora_ga)",
    ),
)


def silence_known_warnings() -> None:
    """Ignore the warnings of ``KNOWN_WARNINGS`` in this process (idempotent)."""
    for pattern, _ in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


# Lightning's own advertising, logged at INFO on every Trainer's start; it has no setting to turn it off.
PROMOTIONS: tuple[str, ...] = ("try installing [litlogger]",)


class DropPromotions(logging.Filter):
    """Drops the log records of ``PROMOTIONS`` and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(promotion in message for promotion in PROMOTIONS)


def route_library_logs_through_hydra() -> None:
    """Import Lightning and drop the console handler its import installs: beside Hydra's, every line
    showed twice. Called by the runs just before they need Lightning, so that a run failing on its
    input (no data, no network) says so before paying Lightning's import."""
    import lightning  # noqa: F401  (its import installs the handlers removed here)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # rank_zero_info logs through this logger; a filter on a logger applies to its own records only
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, DropPromotions) for f in rank_zero.filters):
        rank_zero.addFilter(DropPromotions())
