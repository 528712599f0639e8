"""Length-grouped batches: every row once per epoch, random batch order, little padding."""

from __future__ import annotations

import random

from scipy.stats import spearmanr

from glue_lora.data.reading import read_split
from glue_lora.data.sampler import EpochBatchSampler
from glue_lora.data.tasks import get_task
from tests.helpers.tokenizers import minilm_tokenizer


def padding_share(batches: list[list[int]], lengths: list[int]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - real / computed


def check_epochs(lengths: list[int], batch_size: int = 32, epochs: int = 3) -> list[list[list[int]]]:
    sampler = EpochBatchSampler(lengths, batch_size, shuffle=True, seed=0)
    orders = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        # Every row exactly once per epoch.
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths)))
        # Batches are not in length order across the epoch: their longest rows are uncorrelated with
        # their position (a sorted or reverse-sorted epoch gives |rho| = 1).
        longest = [max(lengths[i] for i in b) for b in batches]
        rho = spearmanr(range(len(batches)), longest).statistic
        assert abs(rho) < 0.2, rho
        orders.append(batches)
    assert orders[0] != orders[1], "each epoch must have its own order"
    return orders


def test_every_row_once_and_batches_shuffled():
    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(5000)]
    check_epochs(lengths)


def test_padding_under_five_percent_on_real_sst2(real_glue):
    rows = read_split(get_task("sst2"), real_glue, "train")
    tokenizer = minilm_tokenizer()
    lengths = [
        len(ids)
        for ids in tokenizer([t[0] for t in rows["texts"]], truncation=True, max_length=128)["input_ids"]
    ]
    assert len(lengths) > 60_000
    for batches in check_epochs(lengths, epochs=2):
        share = padding_share(batches, lengths)
        assert share < 0.05, f"padding share {share:.3f}"
    # For scale: random batches of the same rows are mostly padding.
    shuffled = list(range(len(lengths)))
    random.Random(0).shuffle(shuffled)
    assert padding_share([shuffled[i : i + 32] for i in range(0, len(shuffled), 32)], lengths) > 0.3
