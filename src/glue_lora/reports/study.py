"""`glue-lora study <dir>...`: LoRA-vs-full-fine-tuning studies from the runs' results.json files.

One row per variant (full fine-tuning, LoRA r=..., or another method: dora-r8-a16, vera, bitfit ...):
trainable parameters, best dev score, wall time, optimizer-state memory (measured from the optimizer
after training) and peak memory; and one plot
of the primary dev metric per epoch with a line per variant. Seeds of one variant are averaged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from glue_lora.reports.plots import plot_history
from glue_lora.reports.runs import find_runs
from glue_lora.settings.lora import label_order
from glue_lora.settings.method import run_label
from glue_lora.utils.memory import adamw_state_mb
from glue_lora.utils.run_files import training_peak_mb


def load_results(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The results.json of every finished run in or below ``dirs`` (a run directory, a sweep
    directory, or a results.json file), read by ``reports.runs`` as ``glue-lora report`` reads them."""
    found = []
    for d in dirs:
        path = Path(d)
        if path.is_file():
            found.append(json.loads(path.read_text()))
        else:
            found += [run.results for run in find_runs([path]) if run.results is not None]
    return found


def variant(results: dict[str, Any]) -> str:
    """The run's method as the sweep summaries name it: ``r8-a16`` (LoRA), ``dora-r8-a16``, ``vera``,
    ``bitfit``, ``full`` (results without ``method``: LoRA, or full where ``lora`` is null)."""
    return run_label(results)


def study_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant, values averaged over its runs (seeds)."""
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_variant[variant(r)].append(r)
    rows = []
    for name in sorted(by_variant, key=label_order):
        runs = by_variant[name]
        train = [r.get("train", {}) for r in runs]
        measured = [t["optimizer_state_mb"] for t in train if t.get("optimizer_state_mb") is not None]
        rows.append(
            {
                "variant": name,
                "runs": len(runs),
                "metric": runs[0]["metric"],
                "trainable": runs[0]["params"]["trainable"],
                "score": statistics.mean(r["score"] for r in runs),
                "seconds": statistics.mean(t.get("seconds", 0.0) for t in train),
                "optimizer": train[0].get("optimizer", ""),
                "optimizer_state_mb": statistics.mean(measured) if measured else None,
                "adamw_state_mb": adamw_state_mb(runs[0]["params"]["trainable"]),
                "peak_memory_mb": statistics.mean(training_peak_mb(t) or 0.0 for t in train),
            }
        )
    return rows


def study_table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`study_rows`."""
    header = (
        "| variant | runs | trainable | dev score | wall time (s) | optimizer | optimizer state (MB) "
        "| AdamW state, 2x fp32 (MB) | peak memory (MB) |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for row in study_rows(results):
        state = "n/a" if row["optimizer_state_mb"] is None else f"{row['optimizer_state_mb']:.2f}"
        lines.append(
            f"| {row['variant']} | {row['runs']} | {row['trainable']:,} | "
            f"{100 * row['score']:.2f} ({row['metric']}) | {row['seconds']:.1f} | {row['optimizer']} | "
            f"{state} | {row['adamw_state_mb']:.2f} | {row['peak_memory_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="glue-lora study", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="sweep or run directories holding results.json files")
    parser.add_argument("--out", type=Path, help="where to write study.md and study.png (first dir)")
    args = parser.parse_args(argv)
    results = load_results(args.dirs)
    if not results:
        print(f"error: no results.json under {', '.join(args.dirs)}; did the runs finish?", file=sys.stderr)
        return 2
    out = args.out or Path(args.dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    table = study_table(results)
    (out / "study.md").write_text(table + "\n")
    plot = plot_history(results, out / "study.png")
    print(f"{table}\n\nwrote {out / 'study.md'} and {plot}")
    return 0
