"""`glue-lora bench-methods`: the training speed of each PEFT method against plain LoRA, same session.

Every method trains the same rows for the same optimizer steps in its own process (the benchmark's
``ours`` setting with ``method=<name>``); the repeats alternate the order of the methods, so a drift
of the machine's speed does not favour one. The table gives samples/s, the time of a step relative
to LoRA's (1.00 = as fast; DoRA and AdaLoRA add compute), peak memory and optimizer state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from glue_lora.bench.command import MIN_BATCHES, default_config_dir
from glue_lora.bench.common import Job
from glue_lora.bench.worker import launch

DEFAULT_METHODS = "lora,rslora,dora,pissa,loraplus,lora_fa,adalora,vera,ia3,fourierft,bitfit,head_only,full"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="glue-lora bench-methods",
        description="Training step time of each PEFT method relative to plain LoRA, on this machine.",
        epilog="Example: glue-lora bench-methods --methods lora,dora,vera task=sst2",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the training config")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"default {DEFAULT_METHODS}")
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="bench_methods.json")
    parser.add_argument("--work-dir", help="run directories and logs (default outputs/bench_methods/<time>)")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    if "lora" not in args.methods:
        parser.error("--methods must include lora: every ratio is against it")
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    return args


def method_table(figures: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], str]:
    """Median figures per method and the markdown table, step time relative to LoRA's."""

    def median(method: str, key: str) -> float | None:
        values = [r[key] for r in figures[method] if r.get(key) is not None]
        return statistics.median(values) if values else None

    lora_speed = median("lora", "samples_per_s")
    rows, lines = (
        [],
        [
            "| method | samples/s | step time vs LoRA | peak memory MB | optimizer state MB |",
            "|---|---:|---:|---:|---:|",
        ],
    )
    for method in figures:
        speed = median(method, "samples_per_s")
        row = {
            "method": method,
            "samples_per_s": speed,
            "step_time_vs_lora": lora_speed / speed if speed and lora_speed else None,
            "peak_memory_mb": median(method, "peak_memory_mb"),
            "optimizer_state_mb": median(method, "optimizer_state_mb"),
        }
        rows.append(row)

        def cell(value: float | None, fmt: str) -> str:
            return "n/a" if value is None else fmt.format(value)

        lines.append(
            f"| {method} | {cell(speed, '{:.1f}')} | {cell(row['step_time_vs_lora'], '{:.2f}x')} "
            f"| {cell(row['peak_memory_mb'], '{:.0f}')} | {cell(row['optimizer_state_mb'], '{:.3f}')} |"
        )
    return rows, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from glue_lora.utils.artifacts import atomic_write_json

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    work_dir = Path(args.work_dir or Path("outputs") / "bench_methods" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    rows = max(args.steps, MIN_BATCHES) * args.batch_size
    overrides = [*args.overrides]
    if not any(o.startswith("data.max_train_rows=") for o in overrides):
        overrides.append(f"data.max_train_rows={rows}")
    figures: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    for repeat in range(args.repeats):
        for method in args.methods if repeat % 2 == 0 else args.methods[::-1]:
            print(f"[bench-methods] repeat {repeat + 1}/{args.repeats}: {method}", flush=True)
            job = Job(
                setting="ours",
                overrides=[*overrides, f"method={method}"],
                config_dir=str(default_config_dir().resolve()),
                run_dir=str((work_dir / f"{method}-{repeat}").resolve()),
                steps=args.steps,
                warmup=0,
                batch_size=args.batch_size,
                device="cpu",
                eval_rows=16,
            )
            figures[method].append(launch(job))
    table_rows, table = method_table(figures)
    first = figures["lora"][0]
    report = {
        "args": {"overrides": overrides, "steps": args.steps, "repeats": args.repeats},
        "environment": first.get("environment"),
        "methods": table_rows,
        "runs": figures,
    }
    atomic_write_json(args.out, report)
    print(table)
    print(f"\n[bench-methods] report written to {args.out}; runs and logs in {work_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
