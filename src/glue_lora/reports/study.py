"""`glue-lora study <dir>...`: LoRA-vs-full-fine-tuning studies from the runs' results.json files.

One row per variant (full fine-tuning, LoRA r=...): trainable parameters, best dev score, wall time,
optimizer-state memory (measured from the optimizer after training) and peak memory; and one plot
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

from glue_lora.utils.memory import adamw_state_mb
from glue_lora.utils.run_files import RESULTS


def load_results(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every results.json in or below ``dirs`` (a run directory or a sweep directory)."""
    found = []
    for d in dirs:
        path = Path(d)
        files = [path] if path.is_file() else sorted(path.rglob(RESULTS))
        found += [json.loads(f.read_text()) for f in files]
    return found


def variant(results: dict[str, Any]) -> str:
    lora = results.get("lora")
    if lora is None:
        return "full"
    name = f"r={lora['r']}"
    return name if lora.get("alpha") == lora["r"] else f"{name} alpha={lora['alpha']}"


def _sort_key(name: str) -> tuple[int, float, str]:
    if name == "full":
        return (0, 0.0, name)
    return (1, float(name.split()[0].removeprefix("r=")), name)


def study_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant, values averaged over its runs (seeds)."""
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_variant[variant(r)].append(r)
    rows = []
    for name in sorted(by_variant, key=_sort_key):
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
                "peak_memory_mb": statistics.mean(t.get("peak_memory_mb", 0.0) for t in train),
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


def plot_history(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The primary dev metric per epoch, one line (mean over runs) per variant, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for entry in r.get("history", []):
            curves[variant(r)][int(entry["epoch"]) + 1].append(100 * entry["dev"][r["metric"]])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "v", "D", "x", "*", "P"]
    for i, name in enumerate(sorted(curves, key=_sort_key)):
        epochs = sorted(curves[name])
        means = [statistics.mean(curves[name][e]) for e in epochs]
        ax.plot(epochs, means, styles[i % 4], marker=markers[i % 8], color="black", label=name)
    first = results[0]
    ax.set_title(f"{first['task']} / {first['model']}: dev {first['metric']} per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"dev {first['metric']} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
