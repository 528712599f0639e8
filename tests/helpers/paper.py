"""The paper's score alone, as the report tests compare it (``reports.paper.paper_row`` holds it)."""

from __future__ import annotations

from glue_lora.reports.paper import paper_row


def paper_score(*args, **kwargs) -> float | None:
    row = paper_row(*args, **kwargs)
    return row.score if row is not None else None
