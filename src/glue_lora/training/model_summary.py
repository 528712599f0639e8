"""The model summary printed when fit starts: Lightning's layer table without its FLOPs column.

Lightning counts FLOPs only by running the module on an ``example_input_array``, which a GLUE model
has none of (its batches are dicts of padded token ids), so its own summary shows a FLOPs column of
zeros and "Total FLOPs: 0". This summary keeps the rest: each top-level layer's type, parameters and
mode, and the trainable, frozen and total counts.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

log = logging.getLogger(__name__)

OMITTED_COLUMNS = ("FLOPs",)


class LayerSummary(ModelSummary):
    """``ModelSummary`` printed as a plain table with no FLOPs column and no FLOPs total."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        log.info("\n%s", format_summary(summary_data, total_parameters, trainable_parameters, model_size))


def format_summary(columns: list[tuple[str, list[str]]], total: int, trainable: int, size_mb: float) -> str:
    """The layer table of ``columns`` (Lightning's summary data) and the parameter totals."""
    kept = [(name, [str(v) for v in values]) for name, values in columns if name not in OMITTED_COLUMNS]
    widths = [max([len(name), *(len(v) for v in values)]) for name, values in kept]
    rows = [" | ".join(name.ljust(w) for (name, _), w in zip(kept, widths, strict=True))]
    rows.append("-" * len(rows[0]))
    for i in range(len(kept[0][1]) if kept else 0):
        rows.append(" | ".join(values[i].ljust(w) for (_, values), w in zip(kept, widths, strict=True)))
    rows.append("-" * len(rows[0]))
    counts = [
        (get_human_readable_count(trainable), "trainable params"),
        (get_human_readable_count(total - trainable), "frozen params"),
        (get_human_readable_count(total), "total params"),
        (f"{size_mb:,.3f}", "estimated params size (MB)"),
    ]
    rows += [f"{value:<10} {label}" for value, label in counts]
    return "\n".join(rows)


def model_summary_callbacks(enabled: bool) -> list[ModelSummary]:
    """``[LayerSummary()]`` when ``trainer.enable_model_summary`` is on (Lightning then adds no summary
    of its own), else none."""
    return [LayerSummary()] if enabled else []
