"""`python -m glue_lora.bench` (`make bench`, `glue-lora bench`): ours vs transformers Trainer + PEFT.

Three training settings run on the same rows, model, LoRA config, optimizer, schedule, batch size
and number of optimizer steps:

- ``ours``: ``glue_lora.train.run`` on the composed config (the code path of train.py);
- ``peer_default``: ``Trainer`` + ``get_peft_model`` as ``run_glue.py`` runs by default (every
  example padded to ``data.max_length``, random batches);
- ``peer_best``: the same with dynamic padding (``DataCollatorWithPadding``) and length-grouped
  batches.

Each (setting, repeat) runs in a fresh process, so peak memory (RSS on CPU, peak allocated CUDA
memory on GPU) is its own; the order of the settings alternates between repeats. The steps after
``--warmup`` (0 on CPU, 10 on GPU) are timed, evaluation excluded. The report gives the median and
the spread of each figure and the ratio ours/peer, prints a table and writes the same to
``--out`` as JSON. It also reports the memory figures computed from the built model (meta device)
and the inference speed of merged and unmerged LoRA against the base model.

``--time-to-accuracy 0.85`` instead trains ours and the peer at its best until the dev score
reaches 0.85 (evaluating every ``--eval-every`` steps, at most ``--steps``) and compares the
training seconds it took.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from glue_lora.bench.common import TRAIN_SETTINGS, Job, resolve_device
from glue_lora.bench.flops import H100_BF16_PEAK_FLOPS, add_mfu

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
# transformers' LengthGroupedSampler sorts groups of min(batches / 4, 50) batches: give it 50.
MIN_BATCHES = 200
PEAK_MEMORY_NOTE = "peak RSS of the process (CPU) or peak allocated CUDA memory during training (GPU)"


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


# --- one measurement, in its own process -------------------------------------------------------


def run_worker(job_file: str) -> int:
    import platform

    import lightning
    import peft
    import torch
    import transformers

    job = Job.load(Path(job_file))
    if job.setting == "ours":
        from glue_lora.bench.ours import run_ours

        figures = run_ours(job)
    elif job.setting in ("peer_default", "peer_best"):
        from glue_lora.bench.peer import run_peer

        figures = run_peer(job, best=job.setting == "peer_best")
    elif job.setting == "inference":
        from glue_lora.bench.inference import run_inference

        figures = run_inference(job)
    else:
        raise SystemExit(f"unknown benchmark setting {job.setting!r}")
    cuda = torch.cuda.is_available() and job.device != "cpu"
    figures["environment"] = {
        "device": torch.cuda.get_device_name() if cuda else _cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "lightning": lightning.__version__,
    }
    (Path(job.run_dir) / "bench_result.json").write_text(json.dumps(figures, indent=2))
    return 0


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def launch(job: Job) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process; its output goes to <run_dir>.log."""
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file = run_dir / "bench_job.json"
    job.save(job_file)
    log_file = run_dir.with_suffix(".log")
    with log_file.open("w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "glue_lora.bench", "--worker", str(job_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    if done.returncode != 0:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"the {job.setting} run failed (exit {done.returncode}); log {log_file}:\n{tail}")
    return json.loads((run_dir / "bench_result.json").read_text())


# --- summary ------------------------------------------------------------------------------------


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


def memory_report(job: Job) -> dict[str, Any]:
    """Memory figures of the bench's model and of roberta-base, LoRA vs full fine-tuning (meta device)."""
    import torch
    from omegaconf import open_dict

    from glue_lora.bench.common import compose_config
    from glue_lora.data.tasks import get_task
    from glue_lora.train import build_model
    from glue_lora.utils.memory import memory_figures

    report: dict[str, Any] = {}
    for extra in ([], ["model=roberta_base"]):
        cfg = compose_config(Job(**{**job.__dict__, "overrides": [*job.overrides, *extra]}), "cpu")
        spec = get_task(cfg.task.name)
        entry: dict[str, Any] = {}
        for variant in ("lora", "full"):
            with open_dict(cfg):
                cfg.model.pretrained = cfg.model.get("architecture") is None
                cfg.model.compile = False
                cfg.model.quantize = "none"  # a 4-bit model cannot be built on the meta device
                if variant == "full":
                    cfg.lora = None
            with torch.device("meta"):
                entry[variant] = memory_figures(build_model(cfg, spec, device="meta")).as_dict()
        entry["frozen_weights_mb_bf16"] = entry["lora"]["frozen_params"] * 2 / 2**20
        report[str(cfg.model.name)] = entry
    return report


def model_flops(job: Job, peak_flops: float) -> dict[str, Any]:
    """Model FLOPs per real token of the bench's model (see bench_flops), on the meta device."""
    from omegaconf import OmegaConf

    from glue_lora.bench.common import compose_config
    from glue_lora.bench.flops import flops_report, matmul_weights
    from glue_lora.data.tasks import get_task

    cfg = compose_config(job, "cpu")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return flops_report(matmul_weights(model_cfg, get_task(cfg.task.name).num_labels), peak_flops)


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


# --- the command --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.worker:
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
