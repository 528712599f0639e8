"""The torch-only padding collator gives exactly the batches of DataCollatorWithPadding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding

from glue_lora.data.collate import PadCollator
from glue_lora.data.reading import read_split
from glue_lora.data.tasks import get_task
from glue_lora.data.tokenized import TokenizedSplit, tokenize_rows
from tests.helpers.tokenizers import minilm_tokenizer, roberta_tokenizer


def assert_same_batch(expected: dict, actual: dict) -> None:
    assert set(expected) == set(actual)
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert torch.equal(actual[key], expected[key]), key


@pytest.mark.parametrize("make_tokenizer", [minilm_tokenizer, roberta_tokenizer], ids=["bert", "roberta"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("task", ["mrpc", "stsb"])
def test_matches_data_collator_with_padding(make_tokenizer, side, task, glue_fixtures):
    tokenizer = make_tokenizer()
    tokenizer.padding_side = side
    split = tokenize_rows(read_split(get_task(task), glue_fixtures, "train"), tokenizer, 24, cache_dir=None)
    rows = [split[i] for i in range(len(split))]
    as_lists = [
        {k: v.tolist() if isinstance(v, np.ndarray | np.generic) else v for k, v in r.items()} for r in rows
    ]
    reference = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    ours = PadCollator.from_tokenizer(tokenizer)
    for start in range(0, len(rows), 16):
        expected = reference(as_lists[start : start + 16])
        assert_same_batch(expected, ours(rows[start : start + 16]))  # numpy rows, as the loader gives
        assert_same_batch(expected, ours(as_lists[start : start + 16]))  # plain lists too
    # Regression labels stay floats, class labels are ids.
    assert expected["labels"].dtype == (torch.float32 if task == "stsb" else torch.long)


def test_pad_to_multiple_of():
    batch = PadCollator(0, pad_to_multiple_of=8)([{"input_ids": [5, 6, 7]}, {"input_ids": [5]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].sum().item() == 4


def test_tokenized_split_rows_and_columns():
    split = TokenizedSplit({"input_ids": [[1, 2, 3], [4]], "labels": [0, 1], "idx": [7, 8]})
    assert split.lengths == [3, 1]
    assert split[0]["input_ids"].tolist() == [1, 2, 3] and int(split[1]["idx"]) == 8
    rows = [{k: v.tolist() for k, v in split[i].items()} for i in range(len(split))]
    assert rows == [
        {"input_ids": [1, 2, 3], "labels": 0, "idx": 7},
        {"input_ids": [4], "labels": 1, "idx": 8},
    ]


def test_pad_to_multiple_of_reaches_the_training_collator():
    """data.pad_to_multiple_of rounds each batch's length up (few shapes for torch.compile)."""
    from tests.helpers.runs import compose_train, datamodule_of

    cfg = compose_train(["model=tiny_roberta", "data.pad_to_multiple_of=16"])
    collate = datamodule_of(cfg, get_task("sst2"), minilm_tokenizer())._collate()
    batch = collate([{"input_ids": [101, 5, 6, 102]}, {"input_ids": [101, 102]}])
    assert batch["input_ids"].shape == (2, 16) and batch["attention_mask"].sum() == 6
