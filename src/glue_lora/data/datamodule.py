"""The data module of one task: its splits read, tokenized once and batched for training and
evaluation; a training loader that resumes mid-epoch."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from glue_lora.data.collate import PadCollator, model_inputs
from glue_lora.data.reading import Rows, carve_dev, read_split, subset
from glue_lora.data.sampler import EpochBatchSampler, check_batching
from glue_lora.data.tasks import TaskSpec
from glue_lora.data.tokenized import TokenizedSplit, tokenize_rows
from glue_lora.settings.data import DataSettings
from glue_lora.utils.errors import ConfigError

log = logging.getLogger(__name__)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose place inside an epoch is saved in Lightning checkpoints.

    Lightning stores ``state_dict()`` of a stateful train loader in every checkpoint and calls
    ``load_state_dict`` on resume, so a run killed mid-epoch goes on with the first batch it had not
    trained on, instead of repeating the epoch's first batches. Lightning fetches exactly the
    batches it trains on from a loader with a length, so the batches handed out are the position.
    """

    def __iter__(self):  # a generator, so nothing is drawn before Lightning's set_epoch
        sampler = self.batch_sampler
        self._position = (sampler.epoch, sampler.pending_skip())
        for batch in super().__iter__():
            self._position = (self._position[0], self._position[1] + 1)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = getattr(self, "_position", (self.batch_sampler.epoch, 0))
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.skip_batches(int(state["epoch"]), int(state["batches"]))


class GlueDataModule(L.LightningDataModule):
    """Train/dev/test splits of one task, tokenized once, batched by length with dynamic padding
    (or, with ``sampler="random"`` and ``padding="max_length"``, as the reference batches them)."""

    def __init__(
        self,
        spec: TaskSpec,
        tokenizer: Any,
        *,
        data_dir: str | None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        val_fraction: float = 0.05,
        max_train_rows: int | None = None,
        max_eval_rows: int | None = None,
        skip_malformed_rows: bool = False,
        sampler: str = "length_grouped",
        padding: str = "longest",
        pad_to_multiple_of: int | None = None,
        dev_from_train: bool = False,
    ) -> None:
        super().__init__()
        check_batching(sampler, padding)
        if dev_from_train and tuple(spec.eval_splits) != ("dev",):
            raise ConfigError(
                f"data.dev_from_train=true is not available for {spec.name}: it has several dev splits "
                f"({', '.join(spec.eval_splits)}) and only one can be carved from train. "
                "Use data.dev_from_train=false."
            )
        self.spec = spec
        self.tokenizer = tokenizer
        self.data_dir = data_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.val_fraction = val_fraction
        self.max_train_rows = max_train_rows
        self.max_eval_rows = max_eval_rows
        self.skip_malformed_rows = skip_malformed_rows
        self.group_by_length = sampler == "length_grouped"
        self.pad_to_max_length = padding == "max_length"
        self.pad_to_multiple_of = pad_to_multiple_of
        self.dev_from_train = dev_from_train
        self.splits: dict[str, TokenizedSplit] = {}

    def read(self, split: str) -> Rows:
        return read_split(self.spec, self.data_dir, split, skip_malformed=self.skip_malformed_rows)

    def _dev_from_file(self) -> bool:
        has_dev = "dev" in self.spec.splits or (self.data_dir is None and "dev" in self.spec.hub_splits)
        return has_dev and not self.dev_from_train

    def read_all(self) -> dict[str, Rows]:
        """Read train and the dev split(s); dev is carved from train when the task has no dev file
        or ``dev_from_train`` asks for it (a search that must not tune on the reported dev)."""
        rows = {"train": self.read("train")}
        if self._dev_from_file():
            for split in self.spec.eval_splits:
                rows[split] = self.read(split)
        else:
            # The held-out rows must not depend on the run's seed, or dev scores of seeds differ.
            rows["train"], rows["dev"] = carve_dev(rows["train"], self.val_fraction, seed=0)
        rows["train"] = subset(rows["train"], self.max_train_rows)
        for split in self.spec.eval_splits:
            rows[split] = subset(rows[split], self.max_eval_rows)
        return rows

    def read_eval(self) -> dict[str, Rows]:
        """The dev split(s) alone, exactly as ``read_all`` gives them (eval.py reads no train file)."""
        if self._dev_from_file():
            rows = {split: self.read(split) for split in self.spec.eval_splits}
        else:
            rows = {"dev": carve_dev(self.read("train"), self.val_fraction, seed=0)[1]}
        return {split: subset(r, self.max_eval_rows) for split, r in rows.items()}

    def read_test(self) -> dict[str, Rows]:
        """The test split(s) predicted for the leaderboard (MNLI: matched and mismatched), in full."""
        return {split: self.read(split) for split in self.spec.leaderboard_files}

    def stage_splits(self, stage: str | None) -> tuple[str, ...]:
        if stage == "validate":
            return self.spec.eval_splits
        if stage in ("test", "predict"):
            return tuple(self.spec.leaderboard_files)
        return ("train", *self.spec.eval_splits)

    def setup(self, stage: str | None = None) -> None:
        if all(split in self.splits for split in self.stage_splits(stage)):
            return
        read = {"validate": self.read_eval, "test": self.read_test, "predict": self.read_test}
        for split, rows in read.get(stage or "fit", self.read_all)().items():
            self.splits[split] = tokenize_rows(rows, self.tokenizer, self.max_length, self.cache_dir)
            log.info("%s %s: %d rows", self.spec.name, split, len(self.splits[split]))

    def _collate(self) -> PadCollator:
        width = self.max_length if self.pad_to_max_length else None
        return PadCollator.from_tokenizer(
            self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of, pad_to_length=width
        )

    def _loader(self, split: TokenizedSplit, batch_size: int, shuffle: bool) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = EpochBatchSampler(
            split.lengths,
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            group_by_length=self.group_by_length,
            num_replicas=replicas,
            rank=rank,
        )
        # Training batches are resumable mid-epoch; a loader's own generator keeps the global
        # random stream (dropout) the same whether or not a run was resumed.
        loader = ResumableDataLoader if shuffle else DataLoader
        return loader(
            split,
            batch_sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self._collate(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def calibration_batches(self, count: int) -> list[dict[str, torch.Tensor]]:
        """The first ``count`` batches of the first training epoch (the run's seed orders them), as
        the model takes them (no row index): what a data-driven LoRA start (EVA, CorDA, LoRA-GA) is
        computed from."""
        batches = []
        for batch in self.train_dataloader():
            if len(batches) == count:
                break
            batches.append(model_inputs(batch))
        return batches

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits["train"], self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            self._loader(self.splits[s], self.eval_batch_size, shuffle=False) for s in self.spec.eval_splits
        ]

    def predict_dataloader(self) -> list[DataLoader]:
        """The test split(s), in the order of ``spec.leaderboard_files``."""
        return [
            self._loader(self.splits[s], self.eval_batch_size, shuffle=False)
            for s in self.spec.leaderboard_files
        ]


def datamodule_from_settings(data: DataSettings, spec: TaskSpec, tokenizer: Any) -> GlueDataModule:
    """The task's data module as ``data`` describes it: the one place that maps the settings to it
    (train.py, eval.py and the benchmark all build theirs here)."""
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    fields.pop("global_batch_size")  # the optimizer step's batch, for the trainer's accumulation
    return GlueDataModule(spec, tokenizer, **fields)
