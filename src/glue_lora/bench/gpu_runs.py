"""What bench/gpu.sh's runs left behind, read without torch: a train.py run's score, loss trend,
adapter dtypes and digest; a benchmark report's medians."""

from __future__ import annotations

import csv
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from glue_lora.utils.run_files import ADAPTER, RESULTS, training_peak_mb

UNSCALE_ERROR = "Attempting to unscale FP16 gradients"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def train_losses(run_dir: Path) -> list[float]:
    """The logged train/loss values of a run, in step order (csv/metrics.csv)."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def loss_falls(losses: list[float]) -> bool:
    """Mean of the last quarter of the logged losses below the mean of the first quarter."""
    if len(losses) < 2:
        return False
    k = max(1, len(losses) // 4)
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


def safetensors_dtypes(path: Path) -> dict[str, str]:
    """Tensor name -> dtype, from the file's JSON header (no tensor is read)."""
    with Path(path).open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {name: entry["dtype"] for name, entry in header.items() if name != "__metadata__"}


def sha256(path: Path) -> str | None:
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_log(run_dir: Path) -> str:
    """The run's own log and the console log gpu.sh keeps beside it (<run dir>.log)."""
    run_dir = Path(run_dir)
    parts = []
    for p in (run_dir / "train.log", run_dir.with_suffix(".log")):
        if p.is_file():
            parts.append(p.read_text(errors="replace"))
    return "\n".join(parts)


def training_run(run_dir: Path) -> dict[str, Any]:
    """What a train.py run left: score, loss trend, adapter dtypes and digest, the speed it logged."""
    run_dir = Path(run_dir)
    results = read_json(run_dir / RESULTS)
    log = run_log(run_dir)
    entry: dict[str, Any] = {"run_dir": str(run_dir), "unscale_error": UNSCALE_ERROR in log}
    if results is None:
        entry["status"] = "missing" if not log else "failed"
        return entry
    adapter = run_dir / ADAPTER / "adapter_model.safetensors"
    dtypes = safetensors_dtypes(adapter) if adapter.is_file() else {}
    losses = train_losses(run_dir)
    train = results.get("train", {})
    entry.update(
        status="ok",
        metric=results.get("metric"),
        score=results.get("score"),
        dev=results.get("dev"),
        history=results.get("history"),
        losses_logged=len(losses),
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        loss_falls=loss_falls(losses),
        adapter_dtypes=sorted(set(dtypes.values())),
        trained_fp32=bool(dtypes) and set(dtypes.values()) == {"F32"},
        adapter_sha256=sha256(adapter),
        samples_per_second=train.get("samples_per_second"),
        peak_memory_mb=training_peak_mb(train),
    )
    return entry


BENCH_FIGURES = (
    ("samples_per_s", "samples/s", "{:.1f}"),
    ("real_tokens_per_s", "real tokens/s", "{:.0f}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
    ("mfu", "MFU", "{:.1%}"),
    ("padding_share", "padding", "{:.1%}"),
)


def bench_entry(path: Path) -> dict[str, Any]:
    report = read_json(path)
    if report is None:
        return {"status": "missing", "file": str(path)}
    settings = {
        name: {key: s["summary"][key]["median"] for key, _, _ in BENCH_FIGURES if key in s["summary"]}
        for name, s in report["settings"].items()
    }
    return {
        "status": "ok",
        "file": str(path),
        "device": report.get("environment", {}).get("device"),
        "overrides": report["args"]["overrides"],
        "batch_size": report["args"]["batch_size"],
        "steps": report["args"]["steps"],
        "warmup": report["args"]["warmup"],
        "settings": settings,
        "ratios": report.get("ratios", {}),
        "flops": report.get("flops"),
    }
