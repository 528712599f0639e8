"""The method benchmark's table: each method's step time against LoRA's, from the runs' figures."""

import pytest

from glue_lora.bench.methods import method_table, parse_args


def test_step_time_is_relative_to_lora_and_medians_are_taken():
    figures = {
        "lora": [
            {"samples_per_s": 100.0, "peak_memory_mb": 900},
            {"samples_per_s": 120.0},
            {"samples_per_s": 80.0},
        ],
        "dora": [{"samples_per_s": 50.0, "optimizer_state_mb": 0.6}],
    }
    rows, table = method_table(figures)
    by_name = {r["method"]: r for r in rows}
    assert by_name["lora"]["step_time_vs_lora"] == 1.0
    assert by_name["dora"]["step_time_vs_lora"] == pytest.approx(2.0)  # half the samples/s: twice the step
    assert "| dora | 50.0 | 2.00x | n/a | 0.600 |" in table


def test_lora_must_be_among_the_methods():
    with pytest.raises(SystemExit):
        parse_args(["--methods", "dora,vera"])
