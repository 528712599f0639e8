"""The LoRA paper's GLUE results (Table 2, in ``paper.yaml`` beside this module), for comparisons."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def paper_table() -> dict[str, Any]:
    """The package's copy of the paper's Table 2 and the LoRA rank behind each LoRA row."""
    return yaml.safe_load(resources.files("glue_lora.reports").joinpath("paper.yaml").read_text())


def paper_score(task: str, model: str, lora: dict[str, Any] | None) -> float | None:
    """Table 2's dev score (percent) for this task, model and LoRA setting; None where it has none.

    A LoRA run is compared only when its rank is the one the paper used for that model.
    """
    paper = paper_table()
    if lora is not None and (paper["lora"].get(model) or {}).get("r") != lora.get("r"):
        return None
    row = paper["table2"].get(f"{model}_{'full' if lora is None else 'lora'}") or {}
    value = row.get(task)
    return float(value) if value is not None else None
