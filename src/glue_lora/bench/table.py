"""The benchmark's report: medians and spreads over repeats, ours/peer ratios, the printed table."""

from __future__ import annotations

import statistics
from typing import Any

# (key, label, how to print) of the figures compared in the table, in order.
FIGURES = (
    ("samples_per_s", "samples/s", "{:.1f}"),
    ("real_tokens_per_s", "real tokens/s", "{:.0f}"),
    ("samples_per_cpu_s", "samples/CPU-second", "{:.1f}"),
    ("padding_share", "padding share", "{:.1%}"),
    ("peak_memory_mb", "peak memory MB", "{:.0f}"),
    ("mfu", "MFU", "{:.1%}"),
    ("optimizer_state_mb", "optimizer state MB", "{:.2f}"),
    ("checkpoint_mb", "checkpoint MB", "{:.2f}"),
    ("adapter_mb", "adapter MB", "{:.2f}"),
    ("dev_score", "dev score", "{:.3f}"),
)
TTA_FIGURES = (
    ("train_seconds", "train seconds to target", "{:.1f}"),
    ("train_cpu_seconds", "train CPU-seconds to target", "{:.1f}"),
    ("wall_seconds", "wall seconds to target", "{:.1f}"),
    ("step", "steps to target", "{:.0f}"),
)
PEAK_MEMORY_NOTE = "peak RSS of the process (CPU) or peak allocated CUDA memory during training (GPU)"


def summarise(values: list[float]) -> dict[str, float]:
    median = statistics.median(values)
    spread = 100 * (max(values) - min(values)) / abs(median) if median else 0.0
    return {"median": median, "min": min(values), "max": max(values), "spread_pct": spread}


def aggregate(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = summarise(values)
    return out


def ratios(settings: dict[str, Any], keys: list[str]) -> dict[str, dict[str, float]]:
    """ours / peer for each figure, on medians."""
    out: dict[str, dict[str, float]] = {}
    ours = settings.get("ours", {}).get("summary", {})
    for peer in ("peer_default", "peer_best"):
        theirs = settings.get(peer, {}).get("summary", {})
        row = {
            key: ours[key]["median"] / theirs[key]["median"]
            for key in keys
            if key in ours and key in theirs and theirs[key]["median"]
        }
        if row:
            out[f"ours/{peer}"] = row
    return out


def _fmt(fmt: str, value: float | None) -> str:
    return "-" if value is None else fmt.format(value)


def format_table(report: dict[str, Any]) -> str:
    settings = report["settings"]
    tta = report["mode"] == "time_to_accuracy"
    figures = TTA_FIGURES if tta else FIGURES
    names = list(settings)
    ratio_names = [] if tta else list(report.get("ratios", {}))
    header = ["", *names, *ratio_names]
    rows = [header]
    for key, label, fmt in figures:
        row = [label]
        for name in names:
            stats = settings[name]["summary"].get(key)
            row.append("-" if stats is None else f"{_fmt(fmt, stats['median'])} ±{stats['spread_pct']:.0f}%")
        for name in ratio_names:
            value = report["ratios"][name].get(key)
            row.append("-" if value is None else f"{value:.2f}x")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    notes = [f"medians of {report['args']['repeats']} runs, ± the spread (max-min)/median"]
    if tta:
        for name in names:
            reached = sum(1 for r in settings[name]["runs"] if r.get("reached"))
            notes.append(
                f"{name}: reached {report['args']['target']} in {reached}/{len(settings[name]['runs'])} runs"
            )
        if "speedup" in report:
            notes.append(f"peer_best / ours training seconds to target: {report['speedup']:.2f}x")
    else:
        notes.append(f"peak memory: {PEAK_MEMORY_NOTE}")
        if report.get("flops"):
            notes.append(f"{report['flops']['formula']}; peak {report['flops']['peak_flops']:.3g} FLOP/s")
    for model, entry in report.get("memory", {}).items():
        notes.append(
            f"{model}: AdamW state {entry['lora']['optimizer_state_mb']:.1f} MB with LoRA vs "
            f"{entry['full']['optimizer_state_mb']:.0f} MB fully fine-tuned; LoRA checkpoint "
            f"{entry['lora']['checkpoint_mb']:.1f} MB; frozen weights "
            f"{entry['lora']['frozen_weights_mb']:.0f} MB "
            f"({entry['frozen_weights_mb_bf16']:.0f} MB with model.frozen_dtype=bfloat16)"
        )
    inference = report.get("inference")
    if inference:
        notes.append(
            f"inference: merged LoRA at {inference['merged_vs_base']:.3f}x the base model's samples/s, "
            f"unmerged at {inference['unmerged_vs_base']:.3f}x ({inference['rows']} dev rows, "
            f"{inference['rounds']} rounds)"
        )
    return "\n".join([*lines, "", *notes])
