"""Dynamic padding of pre-tokenized rows into batch tensors, with torch alone.

``DataCollatorWithPadding`` goes through ``tokenizer.pad``, which converts and checks every example
in Python; for rows that are already token-id lists the same batch is one ``torch.tensor`` call and
one masked assignment per column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

# Columns that are padded to the batch's longest row; everything else is one value per row.
SEQUENCE_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch as the model takes it: every column but ``idx``, the row index kept for predictions."""
    return {k: v for k, v in batch.items() if k != "idx"}


class PadCollator:
    """Pad ``input_ids`` (and the other token columns) to the longest row of the batch, or to
    ``pad_to_length`` (the reference's ``padding="max_length"``).

    Produces the tensors ``DataCollatorWithPadding(tokenizer)`` produces for the same rows: padding
    on the tokenizer's side with its pad id, attention mask 0 and token type ``pad_token_type_id``
    over padding; integer labels as ``long``, float labels (regression) as ``float``.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        padding_side: str = "right",
        pad_token_type_id: int = 0,
        pad_to_multiple_of: int | None = None,
        pad_to_length: int | None = None,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.pad_values = {"input_ids": pad_token_id, "token_type_ids": pad_token_type_id}
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_to_length = pad_to_length

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, pad_to_multiple_of: int | None = None, pad_to_length: int | None = None
    ) -> PadCollator:
        return cls(
            tokenizer.pad_token_id,
            padding_side=tokenizer.padding_side,
            pad_token_type_id=getattr(tokenizer, "pad_token_type_id", 0),
            pad_to_multiple_of=pad_to_multiple_of,
            pad_to_length=pad_to_length,
        )

    def _width(self, longest: int) -> int:
        if self.pad_to_length is not None:  # every row to one width (rows are already truncated to it)
            return max(self.pad_to_length, longest)
        multiple = self.pad_to_multiple_of
        return -(-longest // multiple) * multiple if multiple else longest

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(f["input_ids"]) for f in features])
        width = self._width(int(lengths.max()))
        positions = torch.arange(width)
        if self.padding_side == "right":
            real = positions < lengths[:, None]
        else:
            real = positions >= (width - lengths)[:, None]
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            if key in SEQUENCE_COLUMNS:
                out = torch.full((len(features), width), self.pad_values.get(key, 0), dtype=torch.long)
                flat = np.concatenate([np.asarray(f[key]) for f in features])
                out[real] = torch.from_numpy(flat).long()
                batch[key] = out
            else:
                values = np.asarray([f[key] for f in features])
                dtype = torch.float32 if np.issubdtype(values.dtype, np.floating) else torch.long
                batch[key] = torch.from_numpy(values).to(dtype)
        if "attention_mask" not in batch:
            batch["attention_mask"] = real.long()
        return batch
