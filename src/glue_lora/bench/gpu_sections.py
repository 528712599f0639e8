"""The sections of gpu.md: each reads its runs, checks what the GPU run must show, renders markdown."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from glue_lora.bench.gpu_runs import BENCH_FIGURES, UNSCALE_ERROR, bench_entry, training_run

# name -> (file stem, title); the stems give the order of gpu.md.
SECTIONS = {
    "environment": ("00-environment", "Environment"),
    "precision": ("01-precision", "1. Mixed precision against 32-true"),
    "determinism": ("02-determinism", "2. deterministic=true twice"),
    "throughput": ("03-throughput", "3. Throughput and peak memory, ours vs Trainer + PEFT"),
    "deberta": ("04-deberta-xxl", "4. DeBERTa-v2-xxlarge, with and without gradient checkpointing"),
    "qlora": ("05-qlora", "5. QLoRA (model.quantize=4bit) against bf16 frozen weights"),
}
SPEEDUP_TARGET = 1.3  # ours / peer at its best, samples/s (issue 17)
FITS_BYTES = 40e9  # "fits in 40 GB"


def precision_section(runs: dict[str, Path], reference: str, tolerance: float) -> dict[str, Any]:
    entries = {label: training_run(d) for label, d in runs.items()}
    ref = entries.get(reference, {})
    checks: dict[str, bool] = {}
    for label, e in entries.items():
        if e["status"] != "ok":
            checks[f"{label}: ran"] = False
            continue
        checks[f"{label}: loss falls"] = e["loss_falls"]
        checks[f"{label}: LoRA and head fp32"] = e["trained_fp32"]
        checks[f"{label}: no '{UNSCALE_ERROR}'"] = not e["unscale_error"]
        if label != reference and ref.get("status") == "ok":
            e["delta_vs_reference"] = e["score"] - ref["score"]
            checks[f"{label}: dev within {tolerance} of {reference}"] = (
                abs(e["delta_vs_reference"]) <= tolerance
            )
    rows = [
        [
            label,
            e["status"],
            _num(e.get("score"), "{:.4f}"),
            _num(e.get("delta_vs_reference"), "{:+.4f}"),
            f"{_num(e.get('first_loss'), '{:.3f}')} → {_num(e.get('last_loss'), '{:.3f}')}",
            ",".join(e.get("adapter_dtypes", [])) or "-",
            _num(e.get("samples_per_second"), "{:.0f}"),
            _num(e.get("peak_memory_mb"), "{:.0f}"),
        ]
        for label, e in entries.items()
    ]
    table = _table(
        [
            "run",
            "status",
            "dev score",
            f"Δ vs {reference}",
            "train loss first → last",
            "adapter dtypes",
            "samples/s",
            "peak MB",
        ],
        rows,
    )
    notes = [
        f"'within noise': |Δ dev score| ≤ {tolerance}; loss falls: mean of the last quarter of "
        "the logged train losses below the first quarter's"
    ]
    return _section("precision", entries, checks, [table], notes)


def determinism_section(runs: dict[str, Path]) -> dict[str, Any]:
    entries = {label: training_run(d) for label, d in runs.items()}
    done = [e for e in entries.values() if e["status"] == "ok"]
    checks = {f"{label}: ran": e["status"] == "ok" for label, e in entries.items()}
    if len(done) == len(entries) >= 2:
        first = done[0]
        checks["identical adapter bytes (sha256)"] = all(
            e["adapter_sha256"] == first["adapter_sha256"] for e in done
        )
        checks["identical metrics (dev and every evaluation)"] = all(
            (e["dev"], e["history"]) == (first["dev"], first["history"]) for e in done
        )
    rows = [
        [label, e["status"], _num(e.get("score"), "{:.6f}"), (e.get("adapter_sha256") or "-")[:16]]
        for label, e in entries.items()
    ]
    return _section(
        "determinism", entries, checks, [_table(["run", "status", "dev score", "adapter sha256"], rows)]
    )


def throughput_section(runs: dict[str, Path]) -> dict[str, Any]:
    entries = {label: bench_entry(p) for label, p in runs.items()}
    checks: dict[str, bool] = {}
    rows = []
    for label, e in entries.items():
        if e["status"] != "ok":
            rows.append([label, e["status"], *["-"] * len(BENCH_FIGURES)])
            continue
        for name, figures in e["settings"].items():
            rows.append([label, name, *(_num(figures.get(k), f) for k, _, f in BENCH_FIGURES)])
        best = e["ratios"].get("ours/peer_best", {})
        if "samples_per_s" in best:
            checks[
                f"{label}: ours ≥ {SPEEDUP_TARGET}x peer_best samples/s ({best['samples_per_s']:.2f}x)"
            ] = best["samples_per_s"] >= SPEEDUP_TARGET
        if "peak_memory_mb" in best:
            checks[f"{label}: ours peak memory ≤ peer_best ({best['peak_memory_mb']:.2f}x)"] = (
                best["peak_memory_mb"] <= 1.0
            )
    table = _table(["shape", "setting", *(label for _, label, _ in BENCH_FIGURES)], rows)
    notes = [_flops_note(entries)]
    return _section("throughput", entries, checks, [table], [n for n in notes if n])


def deberta_section(runs: dict[str, Path]) -> dict[str, Any]:
    entries = {label: bench_entry(p) for label, p in runs.items()}
    checks: dict[str, bool] = {}
    rows = []
    for label, e in entries.items():
        ours = e.get("settings", {}).get("ours", {})
        peak = ours.get("peak_memory_mb")
        if peak is not None:
            checks[f"{label}: fits in 40 GB (peak {peak * 2**20 / 1e9:.1f} GB)"] = peak * 2**20 <= FITS_BYTES
        rows.append([label, e["status"], *(_num(ours.get(k), f) for k, _, f in BENCH_FIGURES)])
    table = _table(["run", "status", *(label for _, label, _ in BENCH_FIGURES)], rows)
    return _section("deberta", entries, checks, [table], [n for n in [_flops_note(entries)] if n])


def qlora_section(runs: dict[str, Path], skipped: str | None) -> dict[str, Any]:
    if skipped:
        return _section("qlora", {}, {}, [], [f"not run: {skipped}"], status="skipped")
    section = deberta_section(runs)
    section.update(section="qlora", title=SECTIONS["qlora"][1])
    section["markdown"] = section["markdown"].replace(SECTIONS["deberta"][1], SECTIONS["qlora"][1], 1)
    return section


def environment_section(dry_run: bool) -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dry_run": dry_run,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.machine()})",
    }
    if torch.cuda.is_available():
        info["device_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    for name in ("transformers", "peft", "lightning", "bitsandbytes"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    rows = [[k, str(v)] for k, v in info.items()]
    return _section("environment", info, {}, [_table(["", ""], rows)])


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _flops_note(entries: dict[str, Any]) -> str | None:
    flops = next((e["flops"] for e in entries.values() if e.get("flops")), None)
    return f"{flops['formula']}; peak {flops['peak_flops']:.3g} FLOP/s" if flops else None


def _section(
    name: str,
    results: Any,
    checks: dict[str, bool],
    blocks: list[str],
    notes: list[str] | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    if status is None:
        statuses = [e.get("status") for e in results.values() if isinstance(e, dict)]
        if statuses and all(s in ("missing", "failed") for s in statuses):
            status = "not measured"
        elif any(s in ("missing", "failed") for s in statuses):
            status = "partial"
        else:
            status = "ok"
    title = SECTIONS[name][1]
    lines = [f"## {title}", "", f"Status: {status}."]
    if checks:
        lines += ["", *(f"- [{'x' if ok else ' '}] {label}" for label, ok in checks.items())]
    for block in blocks:
        lines += ["", block]
    if notes:
        lines += ["", *(f"Note: {n}" for n in notes)]
    return {
        "section": name,
        "title": title,
        "status": status,
        "checks": checks,
        "all_checks_pass": all(checks.values()) if checks else None,
        "results": results,
        "markdown": "\n".join(lines) + "\n",
    }
