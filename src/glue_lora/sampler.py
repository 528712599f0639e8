"""Length-grouped batching: batches of similar lengths, in random order, every row once per epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yield batches of indices whose sequences have similar lengths.

    Training (``shuffle=True``): the rows are permuted, cut into mega-batches of
    ``group_size * batch_size`` rows, each mega-batch is sorted by length and cut into batches, and
    the batches of the whole epoch are shuffled again. Batch order is therefore random, while
    padding inside a batch stays small. Evaluation (``shuffle=False``): all rows sorted by length.

    With ``num_replicas > 1`` (DDP) every rank takes every ``num_replicas``-th batch; the epoch is
    cut to a multiple of ``num_replicas`` batches so that ranks step together.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        group_size: int = 50,
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
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch so that each epoch has its own order."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = torch.sort(self.lengths, descending=True, stable=True).indices
            return [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(n, generator=generator)
        group = self.group_size * self.batch_size
        batches: list[list[int]] = []
        for start in range(0, n, group):
            chunk = permutation[start : start + group]
            chunk = chunk[torch.sort(self.lengths[chunk], descending=True, stable=True).indices]
            batches.extend(
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            )
        batch_order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in batch_order]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            usable = len(batches) - len(batches) % self.num_replicas if self.shuffle else len(batches)
            batches = batches[self.rank : usable : self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        if self.num_replicas == 1:
            return n_batches
        if self.shuffle:
            return n_batches // self.num_replicas
        return len(range(self.rank, n_batches, self.num_replicas))
