"""Multiruns as a user runs them (`python train.py -m ...`): the sweep summary, a failing job, the
joblib launcher, the rank sweep and paper experiments, and the SLURM launcher config."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from glue_lora.reports.report import main as report_main
from glue_lora.reports.runs import write_failure
from glue_lora.reports.summary import SUMMARY_CSV, SUMMARY_MD
from glue_lora.training.hydra_callbacks import BASIC_SWEEPER, SweepSummary
from tests.helpers.runs import CONF, TINY, job_dirs, read_csv, run_cli
from tests.helpers.wandb_log import read_offline_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def seed_sweep(glue_fixtures, token_cache, tmp_path_factory):
    """3 seeds of STS-B (a regression: Pearson differs between seeds) on a tiny model, logged to W&B
    offline, crossed with a batch size of 0, which fails every job it is in (at validation)."""
    sweep = tmp_path_factory.mktemp("sweep") / "multirun"
    proc = run_cli(
        "train.py",
        [
            "-m",
            *TINY,
            "task=stsb",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "logger=wandb",
            "seed=0,1,2",
            "data.batch_size=8,0",
            f"hydra.sweep.dir={sweep}",
        ],
    )
    return sweep, proc


def test_seed_sweep_summary_matches_numpy(seed_sweep):
    sweep, proc = seed_sweep
    jobs = [d for d in job_dirs(sweep) if (d / "results.json").is_file()]
    assert len(jobs) == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((d / "results.json").read_text()) for d in jobs]
    assert sorted(r["seed"] for r in results) == [0, 1, 2]

    ok = next(r for r in read_csv(sweep / SUMMARY_CSV) if r["data.batch_size"] == "8")
    assert (ok["task"], ok["model"], ok["method"], ok["n"], ok["failed"]) == (
        "stsb",
        "tiny_roberta",
        "r8-a16",
        "3",
        "0",
    )
    assert "seed" not in ok
    pearson = 100 * np.array([r["dev"]["pearson"] for r in results])
    spearman = 100 * np.array([r["dev"]["spearman"] for r in results])
    assert len(set(pearson)) == 3  # distinct scores, so the median is a real check
    assert ok["metric"] == "pearson"
    assert float(ok["median"]) == pytest.approx(np.median(pearson), abs=1e-3)
    assert float(ok["mean"]) == pytest.approx(np.mean(pearson), abs=1e-3)
    assert float(ok["std"]) == pytest.approx(np.std(pearson, ddof=1), abs=1e-3)
    assert float(ok["min"]) == pytest.approx(pearson.min(), abs=1e-3)
    assert float(ok["max"]) == pytest.approx(pearson.max(), abs=1e-3)
    assert float(ok["spearman_median"]) == pytest.approx(np.median(spearman), abs=1e-3)
    assert int(ok["trainable"]) == results[0]["params"]["trainable"]


def test_failed_job_is_listed_and_the_others_summarised(seed_sweep):
    sweep, proc = seed_sweep
    # Hydra re-raises the failed jobs' error once the sweep is done: the command fails...
    assert proc.returncode != 0
    failed_dirs = [d for d in job_dirs(sweep) if (d / "failed.json").is_file()]
    assert len(failed_dirs) == 3
    # ...but the summary written after each job lists the failures beside the finished runs.
    bad = next(r for r in read_csv(sweep / SUMMARY_CSV) if r["data.batch_size"] == "0")
    assert (bad["n"], bad["failed"], bad["median"]) == ("0", "3", "")
    assert "ConfigError: data.batch_size=0 is invalid" in bad["errors"]
    md = (sweep / SUMMARY_MD).read_text()
    failed_section = md.split("## Failed jobs")[1]
    assert failed_section.count("ConfigError: data.batch_size=0 is invalid") == 3
    assert "| stsb | tiny_roberta | r8-a16 | 8 | 3 | pearson |" in md


def test_seeds_are_separate_wandb_runs_in_one_group(seed_sweep):
    sweep, _ = seed_sweep
    jobs = [d for d in job_dirs(sweep) if (d / "results.json").is_file()]
    runs = [read_offline_run(next((d / "wandb").glob("offline-run-*"))) for d in jobs]
    assert {r.group for r in runs} == {"stsb-tiny_roberta-r8-a16"}
    assert sorted(r.config["seed"] for r in runs) == [0, 1, 2]
    for job, run in zip(jobs, runs, strict=True):
        score = json.loads((job / "results.json").read_text())["score"]
        assert run.summary["best/score"] == score


def test_report_on_a_sweep(seed_sweep, tmp_path):
    sweep, _ = seed_sweep
    assert report_main([str(sweep), "--out", str(tmp_path)]) == 0
    assert (tmp_path / SUMMARY_CSV).read_text() == (sweep / SUMMARY_CSV).read_text()
    data = (tmp_path / "curves.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_joblib_launcher_runs_jobs_in_parallel(glue_fixtures, token_cache, tmp_path):
    sweep = tmp_path / "multirun"
    proc = run_cli(
        "train.py",
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            *TINY,
            "trainer.max_epochs=1",
            "task=sst2",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    seeds = sorted(json.loads((d / "results.json").read_text())["seed"] for d in job_dirs(sweep))
    assert seeds == [0, 1]
    (row,) = read_csv(sweep / SUMMARY_CSV)
    assert (row["task"], row["n"], row["failed"]) == ("sst2", "2", "0")


def test_rank_sweep_builds_every_rank_and_full_fine_tuning(tmp_path):
    sweep = tmp_path / "multirun"
    proc = run_cli(
        "train.py",
        [
            "-m",
            "experiment=rank_sweep",
            "model=tiny_roberta",
            "task=rte",
            "dry_run=true",
            f"hydra.sweep.dir={sweep}",
        ],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    loras = [yaml.safe_load((d / ".hydra" / "config.yaml").read_text())["lora"] for d in job_dirs(sweep)]
    assert [(x["r"], x["alpha"]) if x else None for x in loras] == [
        (r, r) for r in (1, 2, 4, 8, 16, 32, 64)
    ] + [None]
    assert all(x["targets"] is None and x["dropout"] == 0.0 for x in loras[:-1])  # the rest as lora/r8
    # dry_run prints each model's counts: trainable parameters grow with the rank, full trains all.
    counts = re.findall(r"^trainable +([\d,]+) \(float32\)$", proc.stdout, flags=re.MULTILINE)
    trainable = [int(c.replace(",", "")) for c in counts]
    assert len(trainable) == 8 and trainable == sorted(trainable)
    assert len(set(trainable)) == 8


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("experiment", "model", "rank"),
    [
        ("paper_roberta_base", "roberta_base", 8),
        ("paper_roberta_large", "roberta_large", 8),
        ("paper_deberta_v2_xxl", "deberta_v2_xxl", 16),
    ],
)
def test_paper_experiments_sweep_every_task_and_five_seeds(experiment, model, rank):
    cfg = compose_with_hydra([f"experiment={experiment}"])
    assert cfg.model.name == model and cfg.lora.r == rank and cfg.lora.alpha == 2 * rank
    params = cfg.hydra.sweeper.params
    tasks = params.task.split(",")
    assert sorted(tasks) == sorted(["mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb"])
    assert params.seed.split(",") == ["0", "1", "2", "3", "4"]
    for task in tasks:  # every job composes
        job = compose_with_hydra([f"experiment={experiment}", f"task={task}", "seed=4"])
        assert job.task.name == task and job.seed == 4
    assert compose_with_hydra([f"experiment={experiment}", "lora=none"]).lora is None


def test_slurm_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_with_hydra(
        [
            "experiment=paper_roberta_base",
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=8",
            "hydra.launcher.tasks_per_node=8",
            "hydra.launcher.timeout_min=720",
            "trainer=ddp",
            "trainer.devices=8",
        ]
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (8, 8, "gpu")
    assert (cfg.trainer.strategy, cfg.trainer.devices) == ("ddp", 8)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "glue_lora.training.hydra_callbacks.SweepSummary"


@pytest.mark.parametrize(
    ("sweeper", "exits"),
    [(BASIC_SWEEPER, True), ("hydra_plugins.glue_lora_search.search_sweeper.SearchSweeper", False)],
)
def test_a_failed_job_ends_the_sweep_with_exit_1_unless_its_sweeper_accepted_it(
    tmp_path, capsys, sweeper, exits
):
    (tmp_path / "6").mkdir()
    write_failure(tmp_path / "6", ValueError("boom"))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"_target_": sweeper}}})
    if exits:
        with pytest.raises(SystemExit) as ended:
            SweepSummary().on_multirun_end(config)
        assert ended.value.code == 1
        assert "1 of 1 job(s) of the sweep failed" in capsys.readouterr().err
    else:  # a search: the failed trial is FAIL in the study, and no later start would rerun it
        SweepSummary().on_multirun_end(config)
        assert "error:" not in capsys.readouterr().err
