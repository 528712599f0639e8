"""Practitioners' setups: RMSProp, clipping, accumulation, schedules, LoRA placement and budget,
AG News (split and submission), and the LoRA-vs-full-fine-tuning study."""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from glue_lora.data.datamodule import GlueDataModule
from glue_lora.data.reading import read_split
from glue_lora.data.tasks import get_task
from glue_lora.evaluate import write_predictions
from glue_lora.reports.study import load_results, study_table
from glue_lora.reports.study import main as study_main
from glue_lora.train import run
from glue_lora.training.module import build_schedule
from glue_lora.utils.errors import ConfigError
from glue_lora.utils.memory import adamw_state_mb
from tests.helpers.runs import CONF, TINY, compose_train, model_of, run_cli

# The shared data holds AG News beside GLUE; AG_NEWS_DIR points elsewhere.
REAL_AG_NEWS = Path(
    os.environ.get("AG_NEWS_DIR") or Path(os.environ.get("GLUE_DIR", "/nonexistent")).parent / "ag_news"
)


class OptimizerProbe(L.Callback):
    """Records the optimizer, its steps and the gradient norm each step was taken with."""

    last: OptimizerProbe | None = None

    def __init__(self) -> None:
        self.grad_norms: list[float] = []
        self.train_batches = 0
        OptimizerProbe.last = self

    def on_train_start(self, trainer, pl_module) -> None:
        self.optimizer = trainer.optimizers[0]
        self.groups = [dict(g, params=len(g["params"])) for g in self.optimizer.param_groups]

        def after_step(optimizer, args, kwargs):  # grads are still those the step used
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        self.optimizer.register_step_post_hook(after_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_batches += 1


def test_rmsprop_clipping_and_accumulation_take_effect(glue_fixtures, token_cache, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "optimizer=rmsprop",
            "optimizer.momentum=0.9",
            "trainer.gradient_clip_val=1e-4",
            "trainer.accumulate_grad_batches=2",
            "lr_tiers={low:{layers:0,lr:1e-4},head:{layers:head,lr:2e-3}}",
            f"+callbacks.probe._target_={__name__}.OptimizerProbe",
        ],
        tmp_path,
    )
    results = run(cfg)
    probe = OptimizerProbe.last
    assert type(probe.optimizer) is torch.optim.RMSprop
    assert results["train"]["optimizer"] == "RMSprop"
    # 48 rows in batches of 8, two epochs, one optimizer step per two batches.
    assert probe.train_batches == 12 and len(probe.grad_norms) == 6
    assert all(norm <= 1e-4 * (1 + 1e-3) for norm in probe.grad_norms)
    # Tiers reach the optimizer (initial_lr: before the warm-up scales them); rest at optimizer.lr.
    lrs = {g["name"]: g["initial_lr"] for g in probe.groups}
    assert lrs["low"] == 1e-4 and lrs["head"] == 2e-3 and lrs["rest"] == cfg.optimizer.lr
    assert all(g["momentum"] == 0.9 for g in probe.groups)
    # RMSProp state: square average and momentum buffer per trained parameter (plus step counts).
    trainable = results["params"]["trainable"]
    assert results["train"]["optimizer_state_mb"] == pytest.approx(2 * 4 * trainable / 2**20, rel=0.05)


@pytest.mark.parametrize("name", ["linear", "cosine", "constant"])
def test_schedules_after_warmup(name):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    scheduler = build_schedule(optimizer, {"name": name, "warmup_steps": 10}, 110)
    lrs = []
    for _ in range(110):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    expected_mid = {"linear": 0.5, "cosine": 0.5, "constant": 1.0}[name]
    assert lrs[60] == pytest.approx(expected_mid, abs=1e-6)
    expected_quarter = {"linear": 0.75, "cosine": (1 + math.cos(math.pi * 0.25)) / 2, "constant": 1.0}[name]
    assert lrs[35] == pytest.approx(expected_quarter, abs=1e-6)


def lora_modules_per_layer(model) -> Counter:
    from peft.tuners.lora import LoraLayer

    found = Counter()
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            layer = int(re.search(r"\.layer\.(\d+)\.", name).group(1))
            found[(layer, name.rsplit(".", 1)[-1])] += 1
    return found


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["model=minilm", "model.pretrained=false", "lora.layers=[4,5]", "lora.targets=[query,key]"],
            {(4, "query"), (4, "key"), (5, "query"), (5, "key")},
        ),
        (["model=tiny_roberta", "lora.layers=[1]"], {(1, "query"), (1, "value")}),
        (
            ["model=tiny_deberta", "lora.layers=[0]", "lora.targets=[query_proj,key_proj,dense]"],
            {(0, "query_proj"), (0, "key_proj"), (0, "dense")},
        ),
        (
            ["model=roberta_base", "model.pretrained=false", "lora.layers=[8,9,10,11]"],
            {(i, t) for i in (8, 9, 10, 11) for t in ("query", "value")},
        ),
    ],
    ids=["bert-query-key", "roberta-layer1", "deberta-any-module", "roberta-base-8-11"],
)
def test_lora_only_where_asked(overrides, expected):
    cfg = compose_train([*overrides, "task=sst2"])
    with torch.device("meta"):
        model = model_of(cfg, get_task("sst2"), device="meta")
    found = lora_modules_per_layer(model)
    if (0, "dense") in expected:  # "dense": attention output, intermediate and output of a layer
        assert found == Counter({(0, "query_proj"): 1, (0, "key_proj"): 1, (0, "dense"): 3})
    else:
        assert set(found) == expected and set(found.values()) == {1}
    trainable_lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert trainable_lora and all(
        int(re.search(r"\.layer\.(\d+)\.", n).group(1)) in {i for i, _ in expected} for n in trainable_lora
    )


def test_budget_fails_before_training_with_the_count(glue_fixtures, token_cache, tmp_path):
    cfg = compose_train([*TINY, "task=sst2", f"paths.glue_dir={glue_fixtures}", "lora.budget=3000"], tmp_path)
    with pytest.raises(ConfigError) as err:
        run(cfg)
    # tiny_roberta, LoRA r=8 on query/value of 2 layers: 2 x 2 x (8 x 32 x 2) = 2,048; head 1,122.
    assert "3,170 trainable parameters (LoRA 2,048 + head 1,122) exceed lora.budget=3,000 by 170" in str(
        err.value
    )
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()
    with pytest.raises(ConfigError, match=r"lora\.budget=-5"):
        run(compose_train([*TINY, "lora.budget=-5"], tmp_path))


def test_agnews_budget_experiment_from_the_command_line(tmp_path):
    result = run_cli(
        "train.py",
        ["experiment=agnews_budget", "model.pretrained=false", "dry_run=true", f"hydra.run.dir={tmp_path}"],
    )
    assert result.returncode == 0, result.stderr
    # roberta-base, LoRA r=8 on query/value of layers 8-11: 4 x 2 x (8 x 768 x 2) = 98,304; head 593,668.
    assert re.search(r"trainable\s+691,972", result.stdout)
    assert "within lora.budget 1,000,000" in result.stdout
    assert re.search(r"top\s+8-11\s+98,304\s+5.00e-04", result.stdout)
    assert re.search(r"head\s+head\s+593,668\s+1.00e-03", result.stdout)
    cfg = compose_train(["experiment=agnews_budget"])
    assert cfg.optimizer._target_ == "torch.optim.RMSprop" and cfg.task.name == "ag_news"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 32, 0.05)
    assert list(cfg.lora.targets) == ["query", "value"] and list(cfg.lora.layers) == [8, 9, 10, 11]

    over = compose_train(
        ["experiment=agnews_budget", "dry_run=true", "lora.layers=null", "lora.budget=600000"]
    )
    with pytest.raises(ConfigError, match=r"888,580 trainable parameters \(LoRA 294,912 \+ head 593,668\)"):
        run(over)


def test_ag_news_dev_split_is_the_same_for_every_seed_and_run(glue_fixtures):
    spec = get_task("ag_news")
    data_dir = glue_fixtures / "ag_news"

    def dev_rows(seed: int, fraction: float = 0.25) -> tuple[list, list]:
        rows = GlueDataModule(spec, None, data_dir=str(data_dir), seed=seed, val_fraction=fraction).read_all()
        return rows["dev"]["texts"], rows["train"]["texts"]

    dev0, train0 = dev_rows(0)
    assert len(dev0) == 12 and len(train0) == 36  # 48 rows, 25 % held out
    assert not set(dev0) & set(train0)
    assert dev_rows(0) == (dev0, train0)  # another run
    assert dev_rows(7)[0] == dev0  # another seed: dev scores of seeds stay comparable
    assert len(dev_rows(0, fraction=0.5)[0]) == 24


def test_ag_news_reading_and_submission_format(glue_fixtures, tmp_path):
    spec = get_task("ag_news")
    rows = read_split(spec, glue_fixtures / "ag_news", "test")
    assert len(rows["texts"]) == 24 and all(
        len(t) == 2 and t[1].endswith(", with a comma") for t in rows["texts"]
    )
    assert set(rows["label"]) <= {0, 1, 2, 3}
    predictions = [i % 4 for i in range(len(rows["idx"]))]
    path = write_predictions(spec, tmp_path / spec.leaderboard_files["test"], rows["idx"], predictions)
    assert path.name == "ag_news.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "ID,Label"
    assert lines[1:5] == ["0,1", "1,2", "2,3", "3,4"]
    parsed = list(csv.DictReader(path.open()))
    assert [int(r["ID"]) for r in parsed] == list(range(24)) and {r["Label"] for r in parsed} == {
        "1",
        "2",
        "3",
        "4",
    }


@pytest.mark.skipif(not (REAL_AG_NEWS / "test.csv").is_file(), reason="no local AG News test.csv")
def test_real_ag_news_test_file():
    rows = read_split(get_task("ag_news"), REAL_AG_NEWS, "test")
    assert len(rows["texts"]) == 7600
    assert Counter(rows["label"]) == {0: 1900, 1: 1900, 2: 1900, 3: 1900}
    assert rows["idx"][:3] == [0, 1, 2]


def sweep_variants() -> list[str]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=lora_vs_full"], return_hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    return str(cfg.hydra.sweeper.params.lora).split(",")


def test_lora_vs_full_composes_every_variant_with_equal_hyperparameters():
    variants = sweep_variants()
    assert variants[0] == "none" and len(variants) == 7
    configs = {v: compose_train(["experiment=lora_vs_full", f"lora={v}"]) for v in variants}
    assert configs["none"].lora is None
    assert [(c.lora.r, c.lora.alpha) for v, c in configs.items() if v != "none"] == [
        (r, r) for r in (1, 2, 4, 8, 16, 64)
    ]
    others = [{k: v for k, v in c.items() if k != "lora"} for c in configs.values()]
    assert all(o == others[0] for o in others)
    assert configs["none"].task.name == "mrpc" and configs["none"].model.name == "minilm"


def test_lora_vs_full_sweep_and_study_table(glue_fixtures, token_cache, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "train.py",
        [
            "experiment=lora_vs_full",
            *TINY,
            "task=rte",
            "data.max_train_rows=32",
            "data.max_eval_rows=16",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "lora=none,rank/2",
            f"hydra.sweep.dir={sweep_dir}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = load_results([sweep_dir])
    assert sorted(r["lora"]["r"] if r["lora"] else 0 for r in results) == [0, 2]
    for r in results:
        # AdamW: two fp32 moments per trained parameter (and a 4-byte step count per tensor).
        assert r["train"]["optimizer"] == "AdamW"
        assert r["train"]["optimizer_state_mb"] == pytest.approx(
            adamw_state_mb(r["params"]["trainable"]), rel=0.05
        )
        assert r["train"]["seconds"] > 0

    assert study_main([str(sweep_dir)]) == 0
    table = (sweep_dir / "study.md").read_text().splitlines()
    assert "wall time (s)" in table[0] and "optimizer state (MB)" in table[0]
    assert table[2].startswith("| full | 1 | 1,011,458 |") and table[3].startswith("| r2-a2 | 1 | 1,634 |")
    png = (sweep_dir / "study.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_study_table_reads_as_the_issue_asks():
    def fake(lora, trainable, state):
        return {
            "task": "rte",
            "model": "roberta_base",
            "metric": "accuracy",
            "score": 0.8,
            "lora": lora,
            "params": {"trainable": trainable},
            "train": {
                "seconds": 10.0,
                "optimizer": "AdamW",
                "optimizer_state_mb": state,
                "peak_memory_mb": 1.0,
            },
            "history": [],
        }

    full = 124_647_170
    table = study_table(
        [
            fake({"r": 8, "alpha": 8}, 294_912, adamw_state_mb(294_912)),
            fake(None, full, adamw_state_mb(full)),
            fake({"r": 8, "alpha": 16}, 294_912, None),
        ]
    )
    lines = table.splitlines()
    assert lines[2].startswith("| full |") and f"| {adamw_state_mb(full):.2f} |" in lines[2]
    assert round(adamw_state_mb(full)) == 951
    assert lines[3].startswith("| r8-a8 |") and "| 2.25 |" in lines[3]
    assert lines[4].startswith("| r8-a16 |") and "| n/a |" in lines[4]


def test_study_command_is_listed(capsys):
    from glue_lora.commands import main

    assert main(["--help"]) == 0
    assert "study" in capsys.readouterr().err
    assert main(["study", "/nonexistent-dir"]) == 2
