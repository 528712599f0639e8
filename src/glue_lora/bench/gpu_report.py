"""One section of bench/gpu.sh at a time: reads the runs it made, writes ``<nn>-<name>.json`` and ``.md``.

Each section is summarised as soon as it finishes, so a script cut short still leaves what it
measured; ``gather`` joins the sections' markdown into ``gpu.md``. A run that is missing (cut by
its section's time cap) or failed is reported as such, never as a figure. Only ``environment``
imports torch; the others read JSON, CSV and safetensors headers and start in well under a second.

    python -m glue_lora.bench.gpu_report precision OUT --runs 32-true=DIR 16-mixed=DIR ...
    python -m glue_lora.bench.gpu_report determinism OUT --runs a=DIR b=DIR
    python -m glue_lora.bench.gpu_report throughput OUT --runs roberta-base-sst2=bench.json ...
    python -m glue_lora.bench.gpu_report gather OUT
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

# name -> (file stem, title); the stems give the order of gpu.md.
SECTIONS = {
    "environment": ("00-environment", "Environment"),
    "precision": ("01-precision", "1. Mixed precision against 32-true"),
    "determinism": ("02-determinism", "2. deterministic=true twice"),
    "throughput": ("03-throughput", "3. Throughput and peak memory, ours vs Trainer + PEFT"),
    "deberta": ("04-deberta-xxl", "4. DeBERTa-v2-xxlarge, with and without gradient checkpointing"),
    "qlora": ("05-qlora", "5. QLoRA (model.quantize=4bit) against bf16 frozen weights"),
}
UNSCALE_ERROR = "Attempting to unscale FP16 gradients"
SPEEDUP_TARGET = 1.3  # ours / peer at its best, samples/s (issue 17)
FITS_BYTES = 40e9  # "fits in 40 GB"


# --- reading one training run -------------------------------------------------------------------


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
    results = read_json(run_dir / "results.json")
    log = run_log(run_dir)
    entry: dict[str, Any] = {"run_dir": str(run_dir), "unscale_error": UNSCALE_ERROR in log}
    if results is None:
        entry["status"] = "missing" if not log else "failed"
        return entry
    adapter = run_dir / "adapter" / "adapter_model.safetensors"
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
        peak_memory_mb=train.get("peak_memory_mb"),
    )
    return entry


# --- sections -----------------------------------------------------------------------------------


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


# --- output ---------------------------------------------------------------------------------------


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


def with_timing(section: dict[str, Any], seconds: float | None, cap: float | None) -> dict[str, Any]:
    """Records how long the section ran against its cap, in the JSON and under the title."""
    if seconds is None:
        return section
    section.update(seconds=seconds, cap_seconds=cap)
    took = f" Took {seconds:.0f} s" + (f" of its {cap:.0f} s cap" if cap else "") + "."
    md = section["markdown"]
    first_stop = md.index(".\n", md.index("Status: ")) + 1
    section["markdown"] = md[:first_stop] + took + md[first_stop:]
    return section


def write_section(out: Path, section: dict[str, Any]) -> Path:
    stem = SECTIONS[section["section"]][0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(section, indent=2, default=str))
    (out / f"{stem}.md").write_text(section["markdown"])
    return out / f"{stem}.md"


def gather(out: Path) -> Path:
    """gpu.md: every section's markdown in order, a section never written marked as such."""
    out = Path(out)
    env = read_json(out / f"{SECTIONS['environment'][0]}.json") or {}
    info = env.get("results", {})
    head = f"# GPU checks: {info.get('device', 'unknown device')}, {info.get('date', 'unknown date')}"
    if info.get("dry_run"):
        head += " (DRY RUN: tiny sizes on a CPU, the figures mean nothing)"
    parts = [head, ""]
    for stem, title in SECTIONS.values():
        md = out / f"{stem}.md"
        parts.append(
            md.read_text() if md.is_file() else f"## {title}\n\nNot run (cut by the time caps or failed).\n"
        )
    (out / "gpu.md").write_text("\n".join(parts))
    return out / "gpu.md"


def _pairs(values: list[str]) -> dict[str, Path]:
    pairs = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"--runs takes LABEL=PATH pairs, got {value!r}")
        pairs[label] = Path(path)
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glue_lora.bench.gpu_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=[*SECTIONS, "gather"])
    parser.add_argument("out", type=Path, help="the script's output folder")
    parser.add_argument("--runs", nargs="*", default=[], help="LABEL=PATH: run dirs or bench JSON files")
    parser.add_argument("--reference", default="32-true", help="precision: the run the others match")
    parser.add_argument("--tolerance", type=float, default=0.02, help="precision: |Δ dev score| allowed")
    parser.add_argument("--skipped", help="qlora: why the section did not run")
    parser.add_argument("--dry-run", action="store_true", help="environment: mark the report as a dry run")
    parser.add_argument("--seconds", type=float, help="how long the section ran")
    parser.add_argument("--cap", type=float, help="the section's time cap in seconds")
    args = parser.parse_args(argv)
    runs = _pairs(args.runs)
    if args.kind == "gather":
        path = gather(args.out)
    else:
        section = {
            "environment": lambda: environment_section(args.dry_run),
            "precision": lambda: precision_section(runs, args.reference, args.tolerance),
            "determinism": lambda: determinism_section(runs),
            "throughput": lambda: throughput_section(runs),
            "deberta": lambda: deberta_section(runs),
            "qlora": lambda: qlora_section(runs, args.skipped),
        }[args.kind]()
        section = with_timing(section, args.seconds, args.cap)
        path = write_section(args.out, section)
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
