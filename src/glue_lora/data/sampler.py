"""Training and evaluation batches: every row once per epoch, shardable over ranks, resumable.

Training batches are length-grouped by default (batches of similar lengths, in random order: little
padding), or in plain random order (``group_by_length=False``), as the reference's ``RandomSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from glue_lora.utils.errors import ConfigError

# data.sampler and data.padding: ours (fast, the defaults) and the reference's.
SAMPLERS = ("length_grouped", "random")
PADDINGS = ("longest", "max_length")


def check_batching(sampler: str, padding: str) -> None:
    """Fail on a ``data.sampler`` or ``data.padding`` that does not exist."""
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"data.sampler={sampler!r} is unknown: use length_grouped (batches of similar lengths, "
            "fast) or random (the reference's order)."
        )
    if padding not in PADDINGS:
        raise ConfigError(
            f"data.padding={padding!r} is unknown: use longest (to the batch's longest row, fast) "
            "or max_length (every row to data.max_length, as the reference)."
        )


class EpochBatchSampler(Sampler[list[int]]):
    """Yield batches of row indices, by default of rows with similar lengths.

    Training (``shuffle=True``) with ``group_by_length``: the rows are permuted, cut into mega-batches of
    ``group_size * batch_size`` rows, each mega-batch is sorted by length and cut into batches, and
    the batches of the whole epoch are shuffled again. Batch order is therefore random, while
    padding inside a batch stays small. Without ``group_by_length`` the permutation is cut into
    batches as it is. Evaluation (``shuffle=False``): all rows sorted by length (the order of
    evaluation changes no metric).
    The order depends only on ``seed`` and the epoch.

    With ``num_replicas > 1`` (DDP) the batches above are global batches of
    ``batch_size * num_replicas`` rows, and every rank takes every ``num_replicas``-th row of each:
    one optimizer step of an N-process run sees the same rows as one step of a single process with
    an N times larger batch. In training a last global batch too small to give every rank a row is
    dropped, so that all ranks step together.

    ``skip_batches`` makes the next pass over an epoch start after the batches a resumed run has
    already trained on.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        group_size: int = 50,
        group_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group_size = group_size
        self.group_by_length = group_by_length
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._skip: tuple[int, int] | None = None

    @property
    def sampler(self) -> EpochBatchSampler:
        # Lightning calls set_epoch on `batch_sampler.sampler` (torch's BatchSampler layout), never
        # on the batch sampler itself; without this every epoch would repeat the order of epoch 0.
        return self

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch so that each epoch has its own order."""
        self.epoch = epoch

    def skip_batches(self, epoch: int, n: int) -> None:
        """Start the next pass over ``epoch`` at its batch ``n`` (a pass over another epoch is whole)."""
        self._skip = (epoch, n)

    def pending_skip(self) -> int:
        """How many batches the next pass will skip."""
        return self._skip[1] if self._skip is not None and self._skip[0] == self.epoch else 0

    def _global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        size = self.batch_size * self.num_replicas
        if not self.shuffle:
            order = torch.sort(self.lengths, descending=True, stable=True).indices
            return [order[i : i + size].tolist() for i in range(0, n, size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(n, generator=generator)
        if not self.group_by_length:
            return [permutation[i : i + size].tolist() for i in range(0, n, size)]
        group = self.group_size * size
        batches: list[list[int]] = []
        for start in range(0, n, group):
            chunk = permutation[start : start + group]
            chunk = chunk[torch.sort(self.lengths[chunk], descending=True, stable=True).indices]
            batches.extend(chunk[i : i + size].tolist() for i in range(0, len(chunk), size))
        batch_order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in batch_order]

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is drawn at the first batch, after Lightning's set_epoch.
        start = self.pending_skip()
        self._skip = None
        yield from self._batches()[start:]

    def _batches(self) -> list[list[int]]:
        batches = self._global_batches()
        if self.num_replicas == 1:
            return batches
        if self.shuffle:  # the one undersized global batch, wherever shuffling put it
            batches = [batch for batch in batches if len(batch) >= self.num_replicas]
        parts = [batch[self.rank :: self.num_replicas] for batch in batches]
        return [part for part in parts if part]

    def __len__(self) -> int:
        n = len(self.lengths)
        size = self.batch_size * self.num_replicas
        n_global, last = divmod(n, size)
        if self.num_replicas == 1:
            return n_global + (last > 0)
        if self.shuffle:
            return n_global + (last >= self.num_replicas)
        return n_global + (last > self.rank)
