"""Every plot of the reports, in one module: ``glue-lora report``'s dev metric per epoch, score
against trainable parameters and the variants' comparison, and ``glue-lora study``'s dev metric per
epoch per method (LoRA setting, DoRA, VeRA, BitFit, full fine-tuning ...).

Plots are drawn with matplotlib's object-oriented API on the Agg canvas (no display needed) and stay
readable in black and white: every configuration has its own line style and marker.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glue_lora.reports.comparison import cells, comparable_runs, task_columns
from glue_lora.reports.paper import paper_table
from glue_lora.reports.runs import Run
from glue_lora.reports.summary import Configuration
from glue_lora.settings.lora import label_order
from glue_lora.settings.method import run_label

CURVES_PNG = "curves.png"
PARAMS_PNG = "params.png"
COMPARISON_PNG = "comparison.png"
LINE_STYLES = ("-", "--", ":", "-.")
# Filled shapes only: the comparison plot draws each one hollow for the last evaluation.
MARKERS = ("o", "s", "^", "D", "v", "X", "P", "*")
COLS = 3


def _styles() -> itertools.cycle:
    # Pairs that differ in both style and marker before any repeats (4 styles x 8 markers).
    return itertools.cycle(
        (LINE_STYLES[i % len(LINE_STYLES)], MARKERS[i % len(MARKERS)]) for i in range(len(MARKERS))
    )


def _grid(n: int, width: float = 5.6, height: float = 4.2):
    from matplotlib.figure import Figure

    cols = min(COLS, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(width * cols, height * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _curve_points(run: Run, metric: str, by_step: bool) -> dict[float, float]:
    points = {}
    for entry in run.results.get("history") or []:
        value = (entry.get("dev") or {}).get(metric)
        if value is not None:
            points[entry["step"] if by_step else entry["epoch"] + 1] = 100.0 * value
    return points


def _evaluated_once_per_epoch(runs: Sequence[Run]) -> bool:
    for run in runs:
        epochs = [e["epoch"] for e in run.results.get("history") or []]
        if len(epochs) != len(set(epochs)):
            return False
    return True


def plot_curves(configs: Sequence[Configuration], path: Path) -> Path | None:
    """Primary dev metric per epoch (per step when evaluated within epochs), one panel per task:
    mean over seeds, with a band from the lowest to the highest seed."""
    from matplotlib.ticker import MaxNLocator

    configs = [c for c in configs if any(r.results.get("history") for r in c.finished)]
    if not configs:
        return None
    tasks = list(dict.fromkeys(c.task for c in configs))
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        panel = [c for c in configs if c.task == task]
        by_step = not all(_evaluated_once_per_epoch(c.finished) for c in panel)
        for config, (style, marker) in zip(panel, _styles(), strict=False):
            curves = [_curve_points(r, config.metric, by_step) for r in config.finished]
            xs = sorted({x for curve in curves for x in curve})
            ys = [[curve[x] for curve in curves if x in curve] for x in xs]
            mean = np.array([np.mean(v) for v in ys])
            (line,) = ax.plot(
                xs,
                mean,
                linestyle=style,
                marker=marker,
                markersize=5,
                label=f"{config.label} (n={len(config.finished)})",
            )
            if len(config.finished) > 1:
                low, high = [np.min(v) for v in ys], [np.max(v) for v in ys]
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(task)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step" if by_step else "epoch")
        ax.set_ylabel(f"dev {panel[0].metric} (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Primary dev metric during training\n(mean over seeds; band: min to max)")
    fig.savefig(path, dpi=120)
    return path


def _families(configs: Sequence[Configuration]) -> dict[tuple, list[Configuration]]:
    """Configurations that differ only in their method (or LoRA setting), where there are several."""
    families: dict[tuple, list[Configuration]] = {}
    for c in configs:
        if c.finished and c.trainable:
            families.setdefault((c.task, c.model, tuple(c.swept.items())), []).append(c)
    return {k: v for k, v in families.items() if len({c.variant for c in v}) > 1}


def _by_method(family: Sequence[Configuration]) -> dict[str, list[Configuration]]:
    """The family's configurations by method name (``lora``, ``full``, ``dora``, ``vera`` ...), each
    method's by trainable parameters: LoRA first, full fine-tuning next, the others by name."""
    groups: dict[str, list[Configuration]] = defaultdict(list)
    for c in family:
        groups[c.run.method_name].append(c)
    order = sorted(groups, key=lambda name: (name != "lora", name != "full", name))
    return {name: sorted(groups[name], key=lambda c: c.trainable) for name in order}


def plot_params(configs: Sequence[Configuration], path: Path) -> Path | None:
    """Final dev score (median over seeds, bars from min to max) against trainable parameters, on a log
    axis, for every task and model where several methods, LoRA ranks or full fine-tuning were run: one
    colour and marker per method, a line through each method's ranks."""
    families = _families(configs)
    if not families:
        return None
    fig, axes = _grid(len(families))
    for ax, ((task, model, swept), family) in zip(axes, families.items(), strict=True):
        groups = _by_method(family)
        for i, (name, group) in enumerate(groups.items()):
            x = [c.trainable for c in group]
            stats = [c.stats()[c.metric] for c in group]
            y = np.array([s.median for s in stats])
            err = np.array([[s.median - s.min for s in stats], [s.max - s.median for s in stats]])
            full = name == "full"
            marker = "*" if full else MARKERS[i % len(MARKERS)]
            ax.errorbar(
                x,
                y,
                yerr=err,
                linestyle="-" if len(group) > 1 else "none",
                marker=marker,
                markersize=9 if marker == "*" else 6,
                color="black" if full else f"C{i}",
                capsize=3,
                label="full fine-tuning" if full else name,
            )
            for c, xi, yi in zip(group, x, y, strict=True):
                rank = c.run.rank
                text = c.variant if len(group) == 1 or rank is None else f"r={rank}"
                ax.annotate(text, (xi, yi), textcoords="offset points", xytext=(4, 6), fontsize="small")
        _plot_paper(ax, task, model, list(groups))
        ax.set_xscale("log")
        ax.margins(x=0.12, y=0.1)
        suffix = " ".join(f"{k}={v}" for k, v in swept)
        ax.set_title(f"{task} - {model}" + (f" ({suffix})" if suffix else ""))
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(f"dev {family[0].metric} (%), median over seeds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Final dev score against trainable parameters\n(median over seeds; bars: min to max)")
    fig.savefig(path, dpi=120)
    return path


def _plot_paper(ax, task: str, model: str, methods: Sequence[str] = ("lora", "full")) -> None:
    """The papers' scores for this task, model and these methods (paper.yaml's ``compare``), as hollow
    markers at the parameter count the paper prints."""
    tables = paper_table()
    compare = tables["compare"].get(model) or {}
    points = []
    for name in methods:
        if name in compare:
            row = tables[compare[name]["table"]][compare[name]["row"]]
            if task in row and row.get("trainable"):
                points.append((name, row["trainable"], row[task]))
    if points:
        x, y = [p[1] for p in points], [p[2] for p in points]
        ax.plot(x, y, linestyle="none", marker="D", markerfacecolor="none", color="black", label="paper")
        for name, xi, yi in points:
            ax.annotate(
                f"paper {name}", (xi, yi), textcoords="offset points", xytext=(4, -12), fontsize="small"
            )


def plot_comparison(configs: Sequence[Configuration], path: Path) -> Path | None:
    """One panel per task, one column per variant (LoRA, full, peer): each seed's score at its best
    evaluation (filled) and at its last (hollow), the median of the best as a bar. In colour, and
    with a marker per variant for black and white. None when the runs hold fewer than two variants."""
    table = cells(comparable_runs(configs) or [])
    if len(table) < 2:
        return None
    tasks = task_columns(table)
    many = len(table) > 4  # ten methods side by side need room and slanted names
    fig, axes = _grid(len(tasks), width=max(4.8, 0.6 * len(table)), height=4.6 if many else 3.8)
    colours = [f"C{i}" for i in range(len(table))]
    for ax, task in zip(axes, tasks, strict=True):
        metric = ""
        for i, row in enumerate(table.values()):
            cell = row.get(task)
            if cell is None:
                continue
            metric = cell.runs[0]["metric"]
            for protocol, face in (("best", colours[i]), ("last", "none")):
                scores = cell.scores(protocol)
                offsets = np.linspace(-0.12, 0.12, len(scores)) if len(scores) > 1 else [0.0]
                ax.scatter(
                    [i + o for o in offsets],
                    scores,
                    marker=MARKERS[i % len(MARKERS)],
                    s=36,
                    facecolors=face,
                    edgecolors=colours[i],
                    zorder=3,
                    label=f"{protocol} evaluation" if task == tasks[0] and i == 0 else None,
                )
            median = cell.median("best")
            if median is not None:
                ax.hlines(median, i - 0.3, i + 0.3, colors=colours[i], linewidth=2.5, zorder=2)
        names = [name if many else "\n".join(name.rsplit(" ", 1)) for name in table]
        ax.set_xticks(
            range(len(table)), names, fontsize=8, rotation=35 if many else 0, ha="right" if many else "center"
        )
        ax.set_title(f"{task} ({metric})")
        ax.set_ylabel("dev score (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("each seed: best evaluation (filled), last (hollow); bar: median of the best", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def plot_history(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The primary dev metric per epoch, one line (mean over runs) per LoRA setting, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for entry in r.get("history", []):
            curves[run_label(r)][int(entry["epoch"]) + 1].append(100 * entry["dev"][r["metric"]])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (style, marker) in zip(sorted(curves, key=label_order), _styles(), strict=False):
        epochs = sorted(curves[name])
        means = [statistics.mean(curves[name][e]) for e in epochs]
        ax.plot(epochs, means, style, marker=marker, color="black", label=name)
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
