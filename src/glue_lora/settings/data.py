"""The ``data`` config group (with the task's data directory and the run's seed) as typed settings,
range-checked in one place; ``data.datamodule.datamodule_from_settings`` builds the data module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glue_lora.utils.errors import ConfigError


def _check_positive(value: Any, key: str, example: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            f"{key}={value!r} is invalid: it must be a positive integer (e.g. {key}={example})."
        )


@dataclass(frozen=True)
class DataSettings:
    """What the data module reads, and how it tokenizes and batches it (train.py's and eval.py's)."""

    data_dir: str | None
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    seed: int = 0
    cache_dir: str | None = None
    val_fraction: float = 0.05
    max_train_rows: int | None = None
    max_eval_rows: int | None = None
    skip_malformed_rows: bool = False
    sampler: str = "length_grouped"
    padding: str = "longest"
    pad_to_multiple_of: int | None = None
    dev_from_train: bool = False
    # The batch of one optimizer step over all devices (null: no accumulation); not the data module's.
    global_batch_size: int | None = None

    def __post_init__(self) -> None:
        _check_positive(self.batch_size, "data.batch_size", "32")
        if self.eval_batch_size is not None:
            _check_positive(self.eval_batch_size, "data.eval_batch_size", "128")
        _check_positive(self.max_length, "data.max_length", "128")
        if self.global_batch_size is not None:
            _check_positive(self.global_batch_size, "data.global_batch_size", "128")
        for key in ("max_train_rows", "max_eval_rows"):
            if getattr(self, key) is not None:
                _check_positive(getattr(self, key), f"data.{key}", "1000")
        workers = self.num_workers
        if workers is not None and not float(workers) >= 0:
            raise ConfigError(
                f"data.num_workers={workers!r} is invalid: it must be 0 or more (e.g. data.num_workers=4)."
            )

    @classmethod
    def for_training(cls, data: Any, task: Any, seed: int) -> DataSettings:
        """train.py's: the ``data`` group, the task's ``data_dir`` and ``val_fraction``, the run's seed."""
        return cls(
            data_dir=task.get("data_dir"),
            max_length=data.max_length,
            batch_size=data.batch_size,
            eval_batch_size=data.get("eval_batch_size"),
            num_workers=data.get("num_workers", 0),
            seed=seed,
            cache_dir=data.get("cache_dir"),
            val_fraction=task.get("val_fraction") or 0.05,
            max_train_rows=data.get("max_train_rows"),
            max_eval_rows=data.get("max_eval_rows"),
            skip_malformed_rows=bool(data.get("skip_malformed_rows", False)),
            sampler=data.get("sampler", "length_grouped"),
            padding=data.get("padding", "longest"),
            pad_to_multiple_of=data.get("pad_to_multiple_of"),
            dev_from_train=bool(data.get("dev_from_train", False)),
            global_batch_size=data.get("global_batch_size"),
        )
