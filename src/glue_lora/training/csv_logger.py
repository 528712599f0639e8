"""Loggers of our own: a CSV logger that a resumed run appends to instead of starting afresh."""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from glue_lora.utils.artifacts import atomic_open


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning deletes an existing metrics.csv here; keep it and go on with its columns.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger, except that an existing ``metrics.csv`` is continued, not deleted.

    A new run never meets an existing file (run directories are new); a resumed run first drops
    the rows of the steps it will train again (``drop_rows_from``), then appends.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def drop_rows_from(self, step: int) -> None:
        """Remove the rows logged at ``step`` or later from ``metrics.csv``."""
        path = f"{self.log_dir}/{ExperimentWriter.NAME_METRICS_FILE}"
        if not self._fs.isfile(path):
            return
        with self._fs.open(path, "r", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = [row for row in reader if not row.get("step") or int(float(row["step"])) < step]
        with atomic_open(path, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
