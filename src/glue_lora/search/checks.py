"""Checks of a run that is a trial of a search (``hparams_search=``), on its typed values."""

from __future__ import annotations

from typing import Any

from glue_lora.utils.errors import ConfigError, DataError


def check_trial_settings(search: Any, dev_from_train: bool) -> None:
    """A trial must be scored on rows held out of train, never on the dev set that is reported."""
    if search and not dev_from_train:
        raise ConfigError(
            f"hparams_search={search.get('name')} with data.dev_from_train=false would tune on the dev "
            "set that the results report. A search trains on train minus a held-out part and scores that "
            "part: drop data.dev_from_train=false."
        )


def check_held_out_rows(search: Any, task: str, rows: int, val_fraction: float) -> None:
    """Enough held-out rows to rank trials by (``hparams_search.min_held_out_rows``)."""
    if not search:
        return
    minimum = int(search.get("min_held_out_rows") or 1)
    if rows < minimum:
        raise DataError(
            f"The search holds out {rows} of {task}'s train rows (task.val_fraction={val_fraction}), fewer "
            f"than hparams_search.min_held_out_rows={minimum}: too few to tell the trials apart. Hold out "
            "more (e.g. +task.val_fraction=0.2, or a larger data.max_eval_rows) or search on a task with "
            "more train rows."
        )
