"""Same seed and deterministic=true: bit-identical metrics and adapter weights; another seed differs."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from glue_lora.train import run
from tests.helpers.runs import TINY, compose_train


def train_once(seed: int, out_dir, glue_fixtures, token_cache) -> tuple[dict, dict]:
    cfg = compose_train(
        [
            *TINY,
            "task=stsb",  # a continuous metric: any difference in the weights shows in it
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "deterministic=true",
            "trainer.max_epochs=1",
            f"seed={seed}",
        ],
        out_dir,
    )
    results = run(cfg)
    return results, load_file(out_dir / "adapter" / "adapter_model.safetensors")


def test_same_seed_is_bit_identical_and_another_seed_differs(glue_fixtures, token_cache, tmp_path):
    first, weights_first = train_once(0, tmp_path / "a", glue_fixtures, token_cache)
    again, weights_again = train_once(0, tmp_path / "b", glue_fixtures, token_cache)
    other, weights_other = train_once(1, tmp_path / "c", glue_fixtures, token_cache)

    assert first["history"] == again["history"]
    assert (first["score"], first["dev"]) == (again["score"], again["dev"])
    assert weights_first.keys() == weights_again.keys()
    assert all(torch.equal(weights_first[k], weights_again[k]) for k in weights_first)

    assert first["history"] != other["history"]
    assert not all(torch.equal(weights_first[k], weights_other[k]) for k in weights_first)
