"""One measurement in a fresh Python process: the parent launches it, the child runs its setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from glue_lora.bench.common import Job


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
