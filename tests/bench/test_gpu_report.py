"""bench/gpu.sh's section reports (glue_lora.bench.gpu_report) on runs made up here: no training.

The slow test at the end runs the whole script in its dry-run mode (tiny sizes on the CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from glue_lora.bench.flops import flops_report
from glue_lora.bench.gpu_report import main
from glue_lora.bench.gpu_runs import safetensors_dtypes, training_run
from glue_lora.bench.gpu_sections import SECTIONS

ROOT = Path(__file__).resolve().parents[2]


def fake_run(run_dir: Path, score: float, losses: list[float], dtype=torch.float32, log: str = "") -> Path:
    """The files a train.py run leaves that the report reads."""
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "csv").mkdir()
    save_file(
        {"lora_A.weight": torch.zeros(2, 4, dtype=dtype), "classifier.weight": torch.ones(2, 4)},
        str(run_dir / "adapter" / "adapter_model.safetensors"),
    )
    rows = ["epoch,step,train/loss,val/accuracy"] + [f"0,{i},{loss}," for i, loss in enumerate(losses)]
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    history = [{"epoch": 0, "step": 10, "dev": {"accuracy": score}}]
    results = {"metric": "accuracy", "score": score, "dev": {"accuracy": score}, "history": history}
    results["train"] = {"samples_per_second": 900.0, "peak_memory_mb": 300.0}
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "train.log").write_text(log)
    return run_dir


def section(out: Path, kind: str) -> dict:
    stem = SECTIONS[kind][0]
    assert (out / f"{stem}.md").is_file()
    return json.loads((out / f"{stem}.json").read_text())


def test_training_run_reads_score_losses_and_dtypes(tmp_path):
    run = training_run(fake_run(tmp_path / "r", 0.85, [0.7, 0.6, 0.5, 0.3]))
    assert run["status"] == "ok" and run["score"] == 0.85
    assert run["loss_falls"] and run["first_loss"] == 0.7 and run["last_loss"] == 0.3
    assert run["trained_fp32"] and run["adapter_dtypes"] == ["F32"]
    assert training_run(tmp_path / "never-ran")["status"] == "missing"


def test_precision_section_checks_each_run_against_fp32(tmp_path):
    out = tmp_path / "out"
    ref = fake_run(tmp_path / "fp32", 0.85, [0.7, 0.5])
    fp16 = fake_run(
        tmp_path / "fp16", 0.84, [0.7, 0.4], log=f"RuntimeError: {'Attempting to unscale FP16 gradients'}."
    )
    bf16 = fake_run(tmp_path / "bf16", 0.80, [0.7, 0.8], dtype=torch.bfloat16)
    argv = ["precision", str(out), "--seconds", "40", "--cap", "90", "--runs", f"32-true={ref}"]
    assert main([*argv, f"16-mixed={fp16}", f"bf16-mixed={bf16}", f"cut={tmp_path / 'cut'}"]) == 0
    report = section(out, "precision")
    checks = report["checks"]
    assert checks["16-mixed: dev within 0.02 of 32-true"]
    assert not checks["16-mixed: no 'Attempting to unscale FP16 gradients'"]
    assert not checks["bf16-mixed: dev within 0.02 of 32-true"]
    assert not checks["bf16-mixed: loss falls"] and not checks["bf16-mixed: LoRA and head fp32"]
    assert not checks["cut: ran"] and report["status"] == "partial" and not report["all_checks_pass"]
    assert report["seconds"] == 40 and "Took 40 s of its 90 s cap." in (out / "01-precision.md").read_text()


def test_determinism_compares_adapter_bytes_and_metrics(tmp_path):
    a = fake_run(tmp_path / "a", 0.85, [0.7, 0.5])
    b = fake_run(tmp_path / "b", 0.85, [0.7, 0.5])
    assert main(["determinism", str(tmp_path / "out"), "--runs", f"1={a}", f"2={b}"]) == 0
    assert section(tmp_path / "out", "determinism")["all_checks_pass"]
    c = fake_run(tmp_path / "c", 0.86, [0.7, 0.5])
    assert main(["determinism", str(tmp_path / "out"), "--runs", f"1={a}", f"2={c}"]) == 0
    checks = section(tmp_path / "out", "determinism")["checks"]
    assert checks["identical adapter bytes (sha256)"]  # same made-up adapter, different metrics
    assert not checks["identical metrics (dev and every evaluation)"]


def bench_json(path: Path, ours: float, peer: float, peak: float = 1000.0) -> Path:
    def summary(samples: float, mem: float) -> dict:
        figures = {
            "samples_per_s": samples,
            "real_tokens_per_s": samples * 20,
            "peak_memory_mb": mem,
            "mfu": 0.1,
        }
        return {"summary": {k: {"median": v} for k, v in figures.items()}}

    settings = {"ours": summary(ours, peak), "peer_best": summary(peer, peak * 1.1)}
    report = {
        "args": {"overrides": ["model=roberta_base"], "batch_size": 16, "steps": 40, "warmup": 10},
        "environment": {"device": "NVIDIA H200"},
        "settings": settings,
        "ratios": {"ours/peer_best": {"samples_per_s": ours / peer, "peak_memory_mb": 1 / 1.1}},
        "flops": flops_report(1000, 989e12),
    }
    path.write_text(json.dumps(report))
    return path


def test_throughput_section_checks_the_target_and_reports_cut_shapes(tmp_path):
    fast = bench_json(tmp_path / "a.json", 140.0, 100.0)
    slow = bench_json(tmp_path / "b.json", 110.0, 100.0)
    argv = [
        "throughput",
        str(tmp_path),
        "--runs",
        f"base={fast}",
        f"large={slow}",
        f"cut={tmp_path / 'no.json'}",
    ]
    assert main(argv) == 0
    report = section(tmp_path, "throughput")
    assert report["checks"]["base: ours ≥ 1.3x peer_best samples/s (1.40x)"]
    assert not report["checks"]["large: ours ≥ 1.3x peer_best samples/s (1.10x)"]
    assert report["checks"]["base: ours peak memory ≤ peer_best (0.91x)"]
    assert report["results"]["cut"]["status"] == "missing" and report["status"] == "partial"
    assert "MFU = 4 x N" in (tmp_path / "03-throughput.md").read_text()


def test_deberta_and_qlora_sections(tmp_path):
    small = bench_json(tmp_path / "gc.json", 10.0, 10.0, peak=20_000)
    big = bench_json(tmp_path / "nogc.json", 12.0, 12.0, peak=50_000)
    assert main(["deberta", str(tmp_path), "--runs", f"gc-true={small}", f"gc-false={big}"]) == 0
    checks = section(tmp_path, "deberta")["checks"]
    assert (
        checks["gc-true: fits in 40 GB (peak 21.0 GB)"]
        and not checks["gc-false: fits in 40 GB (peak 52.4 GB)"]
    )
    assert main(["qlora", str(tmp_path), "--skipped", "bitsandbytes is not installed"]) == 0
    qlora = section(tmp_path, "qlora")
    assert qlora["status"] == "skipped" and "bitsandbytes is not installed" in qlora["markdown"]
    assert main(["qlora", str(tmp_path), "--runs", f"bf16={big}", f"4bit={small}"]) == 0
    assert section(tmp_path, "qlora")["title"].startswith("5. QLoRA")


def test_gather_marks_sections_that_never_ran(tmp_path):
    assert main(["qlora", str(tmp_path), "--skipped", "no CUDA GPU"]) == 0
    assert main(["gather", str(tmp_path)]) == 0
    text = (tmp_path / "gpu.md").read_text()
    assert "## 5. QLoRA" in text and "no CUDA GPU" in text
    assert "## 1. Mixed precision against 32-true\n\nNot run" in text


def test_safetensors_header_is_read_without_tensors(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"x": torch.zeros(3, dtype=torch.bfloat16)}, str(path))
    assert safetensors_dtypes(path) == {"x": "BF16"}


@pytest.mark.slow
def test_gpu_script_dry_run_writes_every_section(tmp_path):
    """`GPU_DRY_RUN=1 bash bench/gpu.sh` from the .carry/ layout bench/gpu_carry.sh makes (minutes)."""
    shared = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
    if not (shared / "device" / "wheels").is_dir():
        pytest.skip(f"no shared/device folder at {shared} (set SHARED)")
    subprocess.run(
        ["bash", "bench/gpu_carry.sh"], cwd=ROOT, check=True, env={**os.environ, "SHARED": str(shared)}
    )
    out = tmp_path / "gpu"
    env = {**os.environ, "GPU_DRY_RUN": "1", "PYTHON": sys.executable}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        ["bash", "bench/gpu.sh", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stem, _ in SECTIONS.values():
        assert (out / f"{stem}.json").is_file() and (out / f"{stem}.md").is_file(), stem
    assert section(out, "environment")["results"]["dry_run"] is True
    assert section(out, "precision")["status"] == "ok" and section(out, "determinism")["all_checks_pass"]
    for kind in ("throughput", "deberta"):
        assert section(out, kind)["status"] in ("ok", "partial"), kind
    assert section(out, "qlora")["status"] == "skipped"  # no GPU here
    assert "DRY RUN" in (out / "gpu.md").read_text()
