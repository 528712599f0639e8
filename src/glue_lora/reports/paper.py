"""The papers' GLUE results (in ``paper.yaml`` beside this module), for comparisons: the LoRA paper's
Table 2, VeRA's Table 2 (RoBERTa) and PiSSA's Table 3 (DeBERTa-v3-base), and which of their rows a run
of a given model and method is compared with (``compare``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class PaperScore:
    """One paper's dev score (percent) for a task, model and method; ``source`` names its table."""

    score: float
    source: str
    trainable: int | None = None


@cache
def paper_table() -> dict[str, Any]:
    """The package's copy of the papers' tables, their sources, and which row each run is compared with."""
    return yaml.safe_load(resources.files("glue_lora.reports").joinpath("paper.yaml").read_text())


def paper_source(table: str) -> str:
    """The citation of one of ``paper.yaml``'s tables (``table2``, ``vera_table2``, ``pissa_table3``)."""
    return paper_table()["sources"].get(table, table)


def paper_row(
    task: str,
    model: str,
    lora: dict[str, Any] | None,
    method: str | None = None,
    rank: int | None = None,
) -> PaperScore | None:
    """The paper's score for this task, model and method; None where no paper reports one.

    ``method`` is the method's name (``lora``, ``dora``, ``vera``, ``full`` ...) and ``rank`` its rank;
    without them (a run recorded before methods existed) the run is LoRA at ``lora``'s rank, or full
    fine-tuning when ``lora`` is None. A run is compared only at the rank the paper used.
    """
    if method is None:
        method = "full" if lora is None else "lora"
        rank = None if lora is None else lora.get("r")
    tables = paper_table()
    entry = (tables["compare"].get(model) or {}).get(method)
    if entry is None or ("r" in entry and entry["r"] != rank):
        return None
    row = tables[entry["table"]][entry["row"]]
    value = row.get(task)
    if value is None:
        return None
    return PaperScore(float(value), entry["table"], row.get("trainable"))
