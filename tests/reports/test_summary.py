"""Summaries and reports over run directories written here in train.py's layout (fast, no training)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from glue_lora.commands import main as glue_lora_main
from glue_lora.data.tasks import TASKS
from glue_lora.reports.paper import paper_table
from glue_lora.reports.report import main as report_main
from glue_lora.reports.runs import find_runs, write_failure
from glue_lora.reports.summary import SUMMARY_CSV, SUMMARY_MD, group_runs, summarise
from glue_lora.settings.lora import lora_label
from tests.helpers.paper import paper_score
from tests.helpers.runs import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def reference_file() -> Path | None:
    """../shared/reference/lora_paper.yaml beside the repository (or above GLUE_DIR's data folder)."""
    candidates = [ROOT.parent / "shared"]
    if os.environ.get("GLUE_DIR"):
        candidates.append(Path(os.environ["GLUE_DIR"]).resolve().parents[1])
    for shared in candidates:
        path = shared / "reference" / "lora_paper.yaml"
        if path.is_file():
            return path
    return None


def write_run(
    run_dir: Path,
    task: str = "rte",
    model: str = "roberta_base",
    lora: dict | None = None,
    seed: int = 0,
    dev: dict | None = None,
    curve: list[float] | None = None,
    trainable: int = 300_000,
    overrides: list[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """A finished run as train.py leaves it: results.json and .hydra/{overrides,config}.yaml."""
    spec = TASKS[task]
    dev = dev or {m: 0.5 for m in spec.metrics}
    curve = curve or [dev[spec.primary_metric]]
    history = [
        {"epoch": e, "step": 10 * (e + 1), "dev": {**dev, spec.primary_metric: v}}
        for e, v in enumerate(curve)
    ]
    results = {
        "task": task,
        "model": model,
        "lora": lora,
        "seed": seed,
        "metric": spec.primary_metric,
        "score": dev[spec.primary_metric],
        "dev": dev,
        **(extra or {}),
        "history": history,
        "params": {"total": 125_000_000, "trainable": trainable, "lora": trainable},
        "train": {"seconds": 1.0, "samples_per_second": 10.0, "peak_memory_mb": 100.0},
    }
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))
    write_hydra(run_dir, task, model, lora, seed, overrides)
    return results


def write_hydra(run_dir, task, model, lora, seed, overrides=None) -> None:
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"task={task}",
        f"model={model}",
        f"seed={seed}",
        "paths.glue_dir=/somewhere",
        *(overrides or []),
    ]
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(lines))
    config = {"seed": seed, "task": {"name": task}, "model": {"name": model}, "lora": lora}
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))


R8 = {"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["query", "value"]}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_paper_copy_equals_the_reference():
    path = reference_file()
    if path is None:
        pytest.skip("../shared/reference/lora_paper.yaml is not present")
    reference = yaml.safe_load(path.read_text())
    ours = paper_table()
    assert ours["table2"] == reference["table2"]
    for model, setting in ours["lora"].items():
        assert setting == reference["recipes"][model]["lora"]


def test_paper_scores_are_matched_by_task_model_and_rank():
    assert paper_score("rte", "roberta_base", R8) == 86.6
    assert paper_score("rte", "roberta_base", None) == 78.7
    assert paper_score("cola", "deberta_v2_xxl", {"r": 16, "alpha": 32}) == 72.4
    assert paper_score("rte", "roberta_base", {"r": 4, "alpha": 4}) is None  # not the paper's rank
    assert paper_score("rte", "tiny_roberta", R8) is None
    assert paper_score("wnli", "roberta_base", R8) is None
    assert lora_label(R8) == "r8-a16" and lora_label(None) == "full"


def test_summary_statistics_paper_difference_and_failures(tmp_path):
    sweep = tmp_path / "sweep"
    scores = [0.80, 0.86, 0.84, 0.90, 0.70]
    f1s = [0.81, 0.85, 0.88, 0.90, 0.75]
    for seed, (acc, f1) in enumerate(zip(scores, f1s, strict=True)):
        write_run(sweep / str(seed), "mrpc", lora=R8, seed=seed, dev={"accuracy": acc, "f1": f1})
    # A failed job: Hydra saved its config, our callback recorded the error.
    failed = sweep / "5"
    write_hydra(failed, "mrpc", "roberta_base", R8, 5)
    write_failure(failed, ValueError("CUDA out of memory.\nTried to allocate 2 GiB"))
    # A job that has not finished (running, or killed without an error).
    write_hydra(sweep / "6", "mrpc", "roberta_base", R8, 6)
    # MNLI's mismatched dev set is summarised as another metric.
    write_run(
        sweep / "7", "mnli", lora=R8, dev={"accuracy": 0.875}, extra={"dev_mismatched": {"accuracy": 0.87}}
    )
    configs = summarise([sweep], sweep)
    assert [(c.task, len(c.finished), len(c.failed), len(c.unfinished)) for c in configs] == [
        ("mnli", 1, 0, 0),
        ("mrpc", 5, 1, 1),
    ]

    mnli, mrpc = read_csv(sweep / SUMMARY_CSV)
    pct = 100 * np.array(scores)
    assert mrpc["method"] == "r8-a16" and mrpc["metric"] == "accuracy"
    assert (mrpc["n"], mrpc["failed"], mrpc["unfinished"]) == ("5", "1", "1")
    assert float(mrpc["median"]) == pytest.approx(np.median(pct), abs=1e-4)
    assert float(mrpc["mean"]) == pytest.approx(np.mean(pct), abs=1e-4)
    assert float(mrpc["std"]) == pytest.approx(np.std(pct, ddof=1), abs=1e-4)
    assert (float(mrpc["min"]), float(mrpc["max"])) == pytest.approx((70.0, 90.0))
    assert float(mrpc["paper"]) == 89.7
    assert float(mrpc["diff"]) == pytest.approx(np.median(pct) - 89.7, abs=1e-4)
    assert float(mrpc["f1_median"]) == pytest.approx(100 * np.median(f1s), abs=1e-4)
    assert float(mrpc["f1_max"]) == pytest.approx(90.0)
    assert mrpc["errors"] == "5: ValueError: CUDA out of memory."
    assert float(mnli["accuracy_mismatched_median"]) == pytest.approx(87.0)
    assert float(mnli["paper"]) == 87.5
    assert mnli["f1_median"] == ""

    md = (sweep / SUMMARY_MD).read_text()
    assert "| mrpc | roberta_base | r8-a16 | 5 (1 failed) (1 unfinished) | accuracy | 84.0 |" in md
    assert "89.7 [1] | -5.7 |" in md and "[1] Hu et al. (2022), LoRA, Table 2" in md
    assert "## Failed jobs" in md and "ValueError: CUDA out of memory." in md
    assert "Tried to allocate" not in md  # only the error's first line
    assert "- `6` (mrpc" in md.split("## Unfinished jobs")[1]  # relative to the summary: no machine path


def test_overrides_that_differ_become_columns(tmp_path):
    for i, (lr, seed) in enumerate([("1e-4", 0), ("1e-4", 1), ("5e-4", 0), ("5e-4", 1), ("1e-3", 0)]):
        write_run(
            tmp_path / str(i),
            lora=R8,
            seed=seed,
            dev={"accuracy": 0.5 + i / 100},
            overrides=[f"optimizer.lr={lr}", f"data.cache_dir=/tmp/{i}"],
        )
    configs = group_runs(find_runs([tmp_path]))
    # Seeds are inside a configuration; paths and caches never split one; numbers sort numerically.
    assert [c.swept for c in configs] == [{"optimizer.lr": v} for v in ("1e-4", "5e-4", "1e-3")]
    assert [len(c.finished) for c in configs] == [2, 2, 1]


def test_report_command_writes_summary_and_plots(tmp_path, capsys):
    """A rank sweep with full fine-tuning on two seeds: curves per epoch and score vs parameters."""
    sweep = tmp_path / "sweep"
    rng = np.random.default_rng(0)
    settings = [{"r": r, "alpha": r} for r in (1, 2, 4, 8)] + [None]
    for i, lora in enumerate(settings):
        for seed in (0, 1):
            curve = list(np.clip(0.6 + 0.05 * np.arange(4) + rng.normal(0, 0.02, 4), 0, 1))
            write_run(
                sweep / f"{i}_{seed}",
                "sst2",
                lora=lora,
                seed=seed,
                dev={"accuracy": max(curve)},
                curve=curve,
                trainable=125_000_000 if lora is None else 2 * 12 * 2 * 768 * lora["r"],
                overrides=[f"lora={'none' if lora is None else 'rank/' + str(lora['r'])}"],
            )
    out = tmp_path / "report"
    assert glue_lora_main(["report", str(sweep), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    rows = read_csv(out / SUMMARY_CSV)
    assert [r["method"] for r in rows] == ["r1-a1", "r2-a2", "r4-a4", "r8-a8", "full"]
    header = (out / SUMMARY_CSV).read_text().splitlines()[0].split(",")
    assert header.count("method") == 1 and "lora" not in header  # lora=... is the method column
    for name in ("curves.png", "params.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 10_000
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            width, height = image.size
            assert width >= 500 and height >= 400
            # Not a blank canvas: many distinct shades were drawn.
            assert len(image.convert("L").getcolors(maxcolors=1 << 16) or []) > 20


def test_report_without_runs_says_so(tmp_path, capsys):
    assert glue_lora_main(["report", str(tmp_path)]) == 2
    assert "no runs" in capsys.readouterr().err
    assert glue_lora_main(["report", str(tmp_path / "missing")]) == 2


def test_report_over_several_directories(tmp_path, monkeypatch):
    write_run(tmp_path / "a" / "0", "rte", lora=R8, seed=0, dev={"accuracy": 0.8})
    write_run(tmp_path / "b" / "run", "rte", lora=R8, seed=1, dev={"accuracy": 0.9})
    monkeypatch.chdir(tmp_path)
    assert glue_lora_main(["report", "a", "b"]) == 0
    (row,) = read_csv(tmp_path / "report" / SUMMARY_CSV)
    assert row["n"] == "2" and float(row["median"]) == pytest.approx(85.0)
    assert (tmp_path / "report" / "curves.png").is_file()
    assert not (tmp_path / "report" / "params.png").exists()  # one LoRA setting: nothing to compare


def provenance_of(commit: str, torch_version: str, **hardware_facts) -> dict:
    versions = {"python": "3.11.7", "torch": torch_version, "transformers": "5.25.0", "peft": "0.21.2"}
    hardware = {"cpu": "AMD EPYC", "cpu_cores": 2, "gpus": [], "gpu_count": 0, "cuda": None, **hardware_facts}
    return {"git": {"commit": commit, "dirty": False}, "versions": versions, "hardware": hardware}


def test_report_prints_the_pooled_provenance_and_warns_when_a_cells_runs_differ(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", lora=R8, seed=0, extra={"provenance": provenance_of("a" * 40, "2.13.0")})
    write_run(sweep / "1", lora=R8, seed=1, extra={"provenance": provenance_of("b" * 40, "2.13.0")})
    write_run(sweep / "2", task="mrpc", lora=R8, extra={"provenance": provenance_of("a" * 40, "2.13.0")})
    write_run(
        sweep / "3", task="mrpc", lora=R8, seed=1, extra={"provenance": provenance_of("a" * 40, "2.13.0")}
    )
    assert report_main([str(sweep)]) == 0
    captured = capsys.readouterr()
    assert "## Provenance" in captured.out
    assert f"- commit: {'a' * 10} (3), {'b' * 10} (1)" in captured.out
    assert "- torch: 2.13.0 (4)" in captured.out and "AMD EPYC (2 cores) (4)" in captured.out
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith("warning: rte roberta_base r8-a16: its runs differ in commit")
    assert "mrpc" not in warning


def test_a_cells_runs_on_different_torch_thread_counts_are_reported_as_differing_hardware(tmp_path, capsys):
    for seed, threads in ((0, 1), (1, 2)):
        provenance = provenance_of("a" * 40, "2.13.0", torch_threads=threads)
        write_run(tmp_path / str(seed), lora=R8, seed=seed, extra={"provenance": provenance})
    assert report_main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "AMD EPYC (2 cores, 1 torch thread) (1), AMD EPYC (2 cores, 2 torch threads) (1)" in captured.out
    assert "its runs differ in hardware" in captured.err


def test_runs_recorded_before_provenance_report_unknown(tmp_path, capsys):
    for seed in (0, 1):
        write_run(tmp_path / str(seed), lora=R8, seed=seed)  # no "provenance" in results.json
    assert report_main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "- commit: unknown (2)" in captured.out and captured.err == ""
