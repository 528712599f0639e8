"""The benchmark runs every setting end to end (tiny model, 2 steps) and reports every figure.

No timing is asserted: only that the settings ran, on the same rows and steps, and that the report
holds the figures, medians, spreads and ratios the README promises.
"""

from __future__ import annotations

import json

import pytest

from glue_lora.bench.command import main, parse_args
from glue_lora.bench.common import TRAIN_SETTINGS, Job
from glue_lora.bench.flops import add_mfu, flops_report, matmul_weights
from glue_lora.bench.table import FIGURES, format_table
from tests.helpers.runs import CONF

TINY_BENCH = ["model=tiny_roberta", "trainer.enable_progress_bar=false"]


def test_dry_run_reports_all_settings(glue_fixtures, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--dry-run", "--no-inference", "--batch-size", "16", "--out", str(out)]
    argv += ["--work-dir", str(tmp_path / "runs")]
    assert main([*argv, *TINY_BENCH, f"paths.glue_dir={glue_fixtures}"]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "throughput"
    assert set(report["settings"]) == set(TRAIN_SETTINGS)
    for name in TRAIN_SETTINGS:
        (run,) = report["settings"][name]["runs"]
        assert run["timed_steps"] == 1 and run["samples"] == 16
        summary = report["settings"][name]["summary"]
        for key, _, _ in FIGURES:
            assert set(summary[key]) == {"median", "min", "max", "spread_pct"}, (name, key)
    runs = {name: report["settings"][name]["runs"][0] for name in TRAIN_SETTINGS}
    # Padding to max_length: the default peer computes 16 x 128 tokens per step.
    assert runs["peer_default"]["computed_tokens"] == 16 * 128
    assert runs["ours"]["computed_tokens"] < 16 * 128 and runs["peer_best"]["computed_tokens"] < 16 * 128
    # The same LoRA and head: the same optimizer state.
    assert runs["ours"]["optimizer_state_mb"] == pytest.approx(runs["peer_best"]["optimizer_state_mb"])
    for peer in ("peer_default", "peer_best"):
        ratios = report["ratios"][f"ours/{peer}"]
        assert {"samples_per_s", "real_tokens_per_s", "peak_memory_mb", "checkpoint_mb"} <= set(ratios)
        assert ratios["optimizer_state_mb"] == pytest.approx(1.0)
    assert report["memory"]["roberta_base"]["lora"]["checkpoint_mb"] < 15
    printed = capsys.readouterr().out
    assert "ours/peer_best" in printed and "samples/s" in printed


def test_time_to_accuracy_stops_at_the_target(glue_fixtures, tmp_path):
    """Both trainers evaluate every 2 steps and stop at the first evaluation (target 0)."""
    from glue_lora.bench.ours import run_ours
    from glue_lora.bench.peer import run_peer

    for setting, run in (("ours", run_ours), ("peer_best", lambda job: run_peer(job, best=True))):
        job = Job(
            setting=setting,
            overrides=[*TINY_BENCH, f"paths.glue_dir={glue_fixtures}", "data.batch_size=8"],
            config_dir=str(CONF),
            run_dir=str(tmp_path / setting),
            steps=6,
            warmup=0,
            batch_size=8,
            device="cpu",
            target=0.0,
            eval_every=2,
        )
        figures = run(job)
        assert figures["reached"]["step"] == 2, setting
        assert len(figures["evals"]) == 1
        assert 0 < figures["reached"]["train_seconds"] <= figures["reached"]["wall_seconds"]


def test_merged_lora_inference(glue_fixtures, tmp_path):
    from glue_lora.bench.inference import run_inference

    job = Job(
        setting="inference",
        overrides=[*TINY_BENCH, f"paths.glue_dir={glue_fixtures}"],
        config_dir=str(CONF),
        run_dir=str(tmp_path),
        device="cpu",
        eval_rows=16,
        inference_rounds=1,
    )
    figures = run_inference(job)
    assert figures["rows"] == 16
    assert figures["merged_max_abs_logit_diff"] < 1e-4  # merging does not change the outputs
    assert figures["merged_vs_base"] > 0 and figures["unmerged_vs_base"] > 0


def test_arguments():
    args = parse_args(["--steps", "300", "--device", "cpu", "model=roberta_base"])
    # on CPU every step is timed, so that all settings are timed over the same rows
    assert args.warmup == 0 and args.settings == list(TRAIN_SETTINGS)
    assert parse_args(["--device", "cuda"]).warmup == 10  # CUDA's start-up stays untimed
    assert parse_args(["--warmup", "5", "--device", "cpu"]).warmup == 5
    assert "data.max_train_rows=9600" in args.overrides  # one epoch of the same rows per setting
    assert "data.max_train_rows=6400" in parse_args(["--steps", "50"]).overrides  # at least 200 batches
    tta = parse_args(["--time-to-accuracy", "0.85"])
    assert tta.settings == ["ours", "peer_best"] and tta.steps == 2000
    assert not any(o.startswith("data.max_train_rows") for o in tta.overrides)
    with pytest.raises(SystemExit):
        parse_args(["--settings", "ours,nope"])


def test_table_formats_a_report():
    summary = {k: {"median": 1.0, "min": 1.0, "max": 1.0, "spread_pct": 0.0} for k, _, _ in FIGURES}
    report = {
        "mode": "throughput",
        "args": {"repeats": 1},
        "settings": {"ours": {"summary": summary, "runs": []}, "peer_best": {"summary": summary, "runs": []}},
        "ratios": {"ours/peer_best": {"samples_per_s": 1.25}},
    }
    table = format_table(report)
    assert "1.25x" in table and "samples/s" in table


def test_mfu_counts_matmul_weights():
    # roberta-base: 12 layers x (4 x 768^2 + 2 x 768 x 3072), then the head's dense and out_proj
    # (RoBERTa's classifier has no pooler); embeddings are lookups, not matrix multiplies.
    arch = {"model_type": "roberta", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}
    arch |= {"intermediate_size": 3072, "vocab_size": 50265, "max_position_embeddings": 514}
    n = matmul_weights({"pretrained": False, "architecture": arch}, 2)
    assert n == 12 * (4 * 768**2 + 2 * 768 * 3072) + 768**2 + 768 * 2
    runs = [{"real_tokens_per_s": 1000.0}, {"samples_per_s": 1.0}]
    add_mfu(runs, flops_report(n, 989e12))
    assert runs[0]["mfu"] == pytest.approx(4 * n * 1000 / 989e12) and "mfu" not in runs[1]
