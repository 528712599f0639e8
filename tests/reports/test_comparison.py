"""The comparison table of a multi-task sweep: variants side by side, both protocols, cost ratios."""

from __future__ import annotations

from pathlib import Path

from glue_lora.reports.comparison import comparison_markdown
from glue_lora.reports.runs import Run


def _run(variant: str, seed: int, best: float, last: float, stack: str = "ours") -> Run:
    lora = None if variant == "full" else {"r": 8, "alpha": 16}
    results = {
        "stack": stack,
        "task": "rte",
        "model": "minilm",
        "lora": lora,
        "seed": seed,
        "metric": "accuracy",
        "score": best,
        "history": [
            {"epoch": 0, "step": 1, "dev": {"accuracy": best}},
            {"epoch": 1, "step": 2, "dev": {"accuracy": last}},
        ],
        "params": {"trainable": 100 if lora else 10_000},
        "train": {
            "seconds": 60.0,
            "optimizer_state_mb": 1.0 if lora else 200.0,
            "samples_per_second": 50.0 + seed if lora else 20.0,
        },
        "sizes": {"adapter_mb": 0.5 if lora else 90.0},
    }
    return Run(Path(f"/{variant}/{seed}"), "rte", "minilm", lora, seed, {}, results=results)


def test_comparison_reports_both_protocols_the_differences_and_the_cost_ratios():
    runs = [
        _run("lora", s, best, last) for s, best, last in ((0, 0.70, 0.60), (1, 0.72, 0.70), (2, 0.66, 0.65))
    ]
    runs += [
        _run("full", s, best, last) for s, best, last in ((0, 0.68, 0.68), (1, 0.69, 0.50), (2, 0.71, 0.70))
    ]
    table = comparison_markdown(runs)
    assert "| glue-lora r8-a16 | 70.0 (66.0-72.0, n=3) | 70.0 |" in table  # best: median 70
    assert "| glue-lora r8-a16 | 65.0 (60.0-70.0, n=3) | 65.0 |" in table  # last: median 65
    assert "| glue-lora r8-a16 − glue-lora full | best | +1.0 | +1.0 |" in table
    assert "| glue-lora r8-a16 − glue-lora full | last | -3.0 | -3.0 |" in table
    assert "optimizer state 200.0x smaller, checkpoint 180.0x smaller" in table
    assert "| train minutes (all tasks) | samples/s rte |" in table
    assert "| glue-lora r8-a16 | 100 | 1.00 | 0.50 | 1.0 | 51.0 |" in table  # samples/s: median over seeds
    assert "| glue-lora full | 10,000 | 200.00 | 90.00 | 1.0 | 20.0 |" in table
    assert comparison_markdown(runs[:3]) is None  # one variant: nothing to compare


def test_a_difference_that_rounds_to_zero_reads_plus_zero():
    lora = [_run("lora", s, 0.7, 0.7) for s in range(3)]
    full = [_run("full", s, 0.7004, 0.7004) for s in range(3)]  # -0.04 points
    table = comparison_markdown(lora + full)
    assert "| glue-lora r8-a16 − glue-lora full | best | +0.0 | +0.0 |" in table


def test_a_sweep_that_varies_more_than_the_variant_is_not_compared():
    from types import SimpleNamespace

    from glue_lora.reports.comparison import comparable_runs

    lora, full = [_run("lora", 0, 0.7, 0.7)], [_run("full", 0, 0.6, 0.6)]
    variants = [
        SimpleNamespace(swept={"variant": "lora"}, runs=lora),
        SimpleNamespace(swept={"variant": "full"}, runs=full),
    ]
    assert comparable_runs(variants) == lora + full
    search = [SimpleNamespace(swept={"optimizer.lr": lr}, runs=lora) for lr in ("5e-4", "1e-3")]
    assert comparable_runs(search) is None  # two learning rates are no seeds of one cell
    assert comparison_markdown(comparable_runs(search)) is None


def test_variants_read_plain_lora_first_then_the_other_methods_then_full_fine_tuning():
    bitfit = _run("lora", 0, 0.6, 0.6)  # "bitfit" sorts before "r8-a16"
    bitfit.results.update(lora=None, method={"name": "bitfit", "trains": "biases", "uses_lora_group": False})
    runs = [_run("full", 0, 0.7, 0.7), bitfit, _run("lora", 0, 0.7, 0.7)]
    table = comparison_markdown(runs)
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| glue-lora")]
    assert rows[:3] == ["| glue-lora r8-a16", "| glue-lora bitfit", "| glue-lora full"]
