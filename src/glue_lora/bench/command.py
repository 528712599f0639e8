"""The benchmark's command line: parse the arguments, run every (setting, repeat) in its own process,
gather the figures into the report (see the package docstring, ``glue_lora.bench``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from glue_lora.bench.common import TRAIN_SETTINGS, Job, resolve_device
from glue_lora.bench.flops import H100_BF16_PEAK_FLOPS, add_mfu
from glue_lora.bench.model_figures import memory_report, model_flops
from glue_lora.bench.table import FIGURES, TTA_FIGURES, aggregate, format_table, ratios
from glue_lora.bench.worker import launch

# transformers' LengthGroupedSampler sorts groups of min(batches / 4, 50) batches: give it 50.
MIN_BATCHES = 200


def default_config_dir() -> Path:
    here = Path.cwd() / "conf"
    return here if (here / "train.yaml").is_file() else Path(__file__).resolve().parents[3] / "conf"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m glue_lora.bench",
        description="Training speed and memory of glue-lora vs transformers Trainer + PEFT.",
        epilog="Example: python -m glue_lora.bench --steps 200 model=roberta_base model.pretrained=false "
        "model.tokenizer=../shared/data/tokenizers/roberta-base",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of the training config (model=..., task=..., lora.r=...)",
    )
    parser.add_argument(
        "--steps", type=int, help="optimizer steps per run (default 100; 2000 with --time-to-accuracy)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed steps at the start of each run (default: 0 on CPU, so that every setting is timed "
        "over the same rows; 10 on GPU, for CUDA's start-up)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median and spread)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", help=f"comma-separated subset of {','.join(TRAIN_SETTINGS)}")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default="bench.json", help="JSON report (default bench.json)")
    parser.add_argument("--work-dir", help="run directories and logs (default outputs/bench/<time>)")
    parser.add_argument("--config-dir", help="the conf/ directory (default ./conf)")
    parser.add_argument(
        "--rows",
        type=int,
        help="training rows (a seeded subset of the split; 0: all). Default: steps x batch (at least "
        f"{MIN_BATCHES} batches), one epoch of the same rows for every setting; all rows with "
        "--time-to-accuracy",
    )
    parser.add_argument("--eval-rows", type=int, default=256, help="dev rows scored after throughput runs")
    parser.add_argument("--no-inference", action="store_true", help="skip the merged-LoRA inference check")
    parser.add_argument("--inference-rounds", type=int, default=5)
    parser.add_argument(
        "--time-to-accuracy",
        type=float,
        metavar="TARGET",
        help="train ours and peer_best until the dev score reaches TARGET; compare the time",
    )
    parser.add_argument(
        "--peak-flops",
        type=float,
        default=H100_BF16_PEAK_FLOPS,
        help="the device's peak dense FLOP/s for MFU (default 989e12: H100/H200 bf16)",
    )
    parser.add_argument("--eval-every", type=int, default=100, help="steps between dev evaluations (TTA)")
    parser.add_argument(
        "--dry-run", action="store_true", help="2 steps on 64 rows, 1 repeat: checks that every setting runs"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.steps, args.warmup, args.repeats = args.steps or 2, 1, 1
        args.eval_rows, args.inference_rounds = 16, 1
        args.rows = args.rows or 64
    if args.warmup is None:
        # Trainer's length-grouped sampler puts its longest batches first: untimed steps would drop
        # more work from the peer than from us. On CPU nothing needs warming up, so time them all.
        args.warmup = 10 if resolve_device(args.device) == "cuda" else 0
    if args.steps is None:
        args.steps = 2000 if args.time_to_accuracy is not None else 200
    if args.rows is None and args.time_to_accuracy is None:
        # One epoch: every setting trains on each row once. At least 200 batches, the least with
        # which Trainer's group_by_length sorts groups of 50 batches (fewer rows, smaller groups).
        args.rows = max(args.steps, MIN_BATCHES) * args.batch_size
    if args.rows and not any(o.startswith("data.max_train_rows=") for o in args.overrides):
        args.overrides.append(f"data.max_train_rows={args.rows}")
    if args.time_to_accuracy is None:
        args.warmup = min(args.warmup, args.steps - 1)
    else:
        args.warmup = 0
    for name in ("steps", "repeats", "batch_size", "eval_every", "inference_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    default_settings = ("ours", "peer_best") if args.time_to_accuracy is not None else TRAIN_SETTINGS
    args.settings = args.settings.split(",") if args.settings else list(default_settings)
    unknown = [s for s in args.settings if s not in TRAIN_SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(TRAIN_SETTINGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.worker:
        from glue_lora.bench.worker import run_worker

        return run_worker(args.worker)
    from glue_lora.utils.artifacts import atomic_write_json

    work_dir = Path(args.work_dir or Path("outputs") / "bench" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    config_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    tta = args.time_to_accuracy is not None

    def job(setting: str, repeat: int) -> Job:
        return Job(
            setting=setting,
            overrides=list(args.overrides),
            config_dir=str(config_dir.resolve()),
            run_dir=str((work_dir / f"{setting}-{repeat}").resolve()),
            steps=args.steps,
            warmup=args.warmup,
            batch_size=args.batch_size,
            seed=args.seed + repeat if tta else args.seed,
            device=args.device,
            target=args.time_to_accuracy,
            eval_every=args.eval_every,
            eval_rows=args.eval_rows,
            inference_rounds=args.inference_rounds,
        )

    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.settings}
    for repeat in range(args.repeats):
        order = args.settings if repeat % 2 == 0 else args.settings[::-1]
        for setting in order:
            print(f"[bench] repeat {repeat + 1}/{args.repeats}: {setting}", flush=True)
            runs[setting].append(launch(job(setting, repeat)))

    keys = [k for k, _, _ in (TTA_FIGURES if tta else FIGURES)]
    flops = None if tta else model_flops(job("ours", 0), args.peak_flops)
    settings: dict[str, Any] = {}
    for name, results in runs.items():
        if tta:
            rows = [r["reached"] for r in results if r.get("reached")]
            settings[name] = {"runs": results, "summary": aggregate(rows, keys)}
        else:
            add_mfu(results, flops)
            settings[name] = {"runs": results, "summary": aggregate(results, keys)}
    first = next(iter(runs.values()))[0]
    report: dict[str, Any] = {
        "mode": "time_to_accuracy" if tta else "throughput",
        "args": {
            "overrides": args.overrides,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "target": args.time_to_accuracy,
            "eval_every": args.eval_every if tta else None,
        },
        "environment": first["environment"],
        "settings": settings,
    }
    if tta:
        ours = settings.get("ours", {}).get("summary", {}).get("train_seconds")
        peer = settings.get("peer_best", {}).get("summary", {}).get("train_seconds")
        if ours and peer:
            report["speedup"] = peer["median"] / ours["median"]
    else:
        report["ratios"] = ratios(settings, keys)
        report["flops"] = flops
    report["memory"] = memory_report(job("ours", 0))
    if not args.no_inference and not tta:
        print("[bench] inference: base vs unmerged vs merged LoRA", flush=True)
        inference_job = job("inference", 0)
        inference_job.eval_rows = args.eval_rows if args.dry_run else None
        report["inference"] = launch(inference_job)
    atomic_write_json(args.out, report)
    print(format_table(report))
    print(f"\n[bench] report written to {args.out}; runs and logs in {work_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
