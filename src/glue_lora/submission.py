"""Leaderboard-style CSV submissions (AG News): one ``ID,Label`` row per test row, in file order.

``ID`` is the row's ``idx`` as read by data.py (its 0-based position in test.csv for AG News) and
``Label`` the label as written in the task's files (AG News: the class index 1-4).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from glue_lora.errors import ConfigError
from glue_lora.tasks import TaskSpec

HEADER = ("ID", "Label")


def write_csv_submission(
    path: str | Path, spec: TaskSpec, ids: Sequence[int], predictions: Sequence[int]
) -> Path:
    """Write predicted label ids of ``spec``'s test rows as ``ID,Label`` (atomically) to ``path``."""
    if spec.label_names is None:
        raise ConfigError(
            f"Task {spec.name} is a regression task; an ID,Label submission needs class labels. "
            "Write its predictions in the GLUE TSV format instead."
        )
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids but {len(predictions)} predictions")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            for row_id, label_id in zip(ids, predictions, strict=True):
                writer.writerow((int(row_id), spec.label_names[int(label_id)]))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
