"""Where a task's data comes from, checked in seconds before any model is built or library imported.

A local GLUE directory must hold the task's folder; without one the task is read from the Hugging
Face Hub, which must be reachable (``glue_lora.utils.hub``). This module imports neither torch nor
Lightning, so a run without data fails before their imports.
"""

from __future__ import annotations

from pathlib import Path

from glue_lora.data.tasks import TaskSpec
from glue_lora.utils.errors import DataError

DATA_DIR_HINT = (
    "Point GLUE_DIR (or paths.glue_dir=) at a GLUE directory in the download_glue_data.py layout "
    "(<glue_dir>/<TASK>/train.tsv, dev.tsv, test.tsv), or AG_NEWS_DIR (paths.ag_news_dir=) at a "
    "directory with AG News train.csv and test.csv; set the path to null to load the task from the Hub."
)


def not_loaded_from_hub(spec: TaskSpec, split: str, reason: object) -> DataError:
    return DataError(
        f"Could not load {spec.hub_path} ({spec.hub_name or spec.name}, split "
        f"{spec.hub_splits[split]}) from the Hugging Face Hub: {reason}. Without network access, "
        "point GLUE_DIR or paths.glue_dir at a local GLUE directory (download_glue_data.py "
        "layout), or set HF_HUB_OFFLINE=1 to use a copy in the Hugging Face cache."
    )


def check_data_source(spec: TaskSpec, data_dir: str | Path | None) -> None:
    """Fail in seconds, before any model is built, when the task's data cannot be reached:
    no such task directory under ``data_dir``, or (``data_dir`` None) a Hub that cannot be reached."""
    from glue_lora.utils.hub import hub_address, hub_reachable, offline_mode

    if data_dir is None:
        if not offline_mode() and not hub_reachable():
            raise not_loaded_from_hub(spec, "train", f"{hub_address()[0]} cannot be reached (no network?)")
    elif not (Path(data_dir) / spec.directory).is_dir():
        raise DataError(
            f"The data directory {Path(data_dir) / spec.directory} for task {spec.name} does not exist. "
            f"{DATA_DIR_HINT}"
        )
