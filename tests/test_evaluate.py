"""eval.py: dev metrics equal the training run's exactly; test predictions in the leaderboard format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from glue_lora.data.tasks import TASKS, get_task
from glue_lora.evaluate import format_prediction
from glue_lora.evaluate import run as evaluate
from glue_lora.train import run as train
from glue_lora.utils.errors import ConfigError, DataError
from tests.helpers.adapters import make_adapter
from tests.helpers.runs import TINY, compose_eval, compose_tiny_eval, compose_train, run_cli


def trained(task: str, tmp_path: Path, glue_dir: Path, cache: Path, rows: list[str] = ()) -> dict:
    overrides = [*TINY, f"task={task}", f"paths.glue_dir={glue_dir}", f"data.cache_dir={cache}", *rows]
    return train(compose_train(overrides, tmp_path / "run"))


@pytest.mark.parametrize("task", ["stsb", "mnli"])
def test_eval_reproduces_the_training_runs_dev_metrics_exactly(task, glue_fixtures, token_cache, tmp_path):
    results = trained(task, tmp_path, glue_fixtures, token_cache)
    evaluated = evaluate(compose_tiny_eval(tmp_path / "run", glue_fixtures, token_cache, tmp_path / "eval"))
    assert evaluated["dev"] == results["dev"]  # exact, not approximate
    assert evaluated["score"] == results["score"]
    if task == "mnli":
        assert evaluated["dev_mismatched"] == results["dev_mismatched"]
    assert set(evaluated["dev"]) == set(get_task(task).metrics)
    written = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert written["dev"] == results["dev"] and written["split"] == "dev"
    for produced in (written, json.loads((tmp_path / "run" / "results.json").read_text())):
        assert set(produced["provenance"]) == {"started", "git", "command", "versions", "hardware"}
        assert (
            produced["provenance"]["versions"]["torch"] and "cpu_cores" in produced["provenance"]["hardware"]
        )


def check_stsb_submission(path: Path, n_rows: int) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == n_rows + 1
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(n_rows))
    scores = [line.split("\t")[1] for line in lines[1:]]
    assert all(0.0 <= float(s) <= 5.0 and len(s.split(".")[1]) == 3 for s in scores)


def test_eval_py_writes_the_submission_file(glue_fixtures, token_cache, tmp_path):
    run_dir = make_adapter(tmp_path / "run", "stsb")
    args = [
        f"adapter={run_dir}",
        "split=test",
        f"paths.glue_dir={glue_fixtures}",
        f"data.cache_dir={token_cache}",
    ]
    done = run_cli("eval.py", [*args, f"hydra.run.dir={tmp_path / 'test'}"])
    assert done.returncode == 0, done.stderr[-2000:]
    check_stsb_submission(tmp_path / "test" / "STS-B.tsv", 24)
    assert "24 test predictions" in done.stdout


@pytest.mark.slow
def test_eval_py_on_real_glue_files(real_glue, token_cache, tmp_path):
    rows = ["data.max_train_rows=64", "data.max_eval_rows=64"]
    results = trained("stsb", tmp_path, real_glue, token_cache, rows)
    common = [f"adapter={tmp_path / 'run' / 'adapter'}", f"data.cache_dir={token_cache}"]
    dev = run_cli("eval.py", [*common, "data.max_eval_rows=64", f"hydra.run.dir={tmp_path / 'dev'}"])
    assert dev.returncode == 0, dev.stderr[-2000:]
    assert json.loads((tmp_path / "dev" / "eval_results.json").read_text())["dev"] == results["dev"]
    test = run_cli("eval.py", [*common, "split=test", f"hydra.run.dir={tmp_path / 'test'}"])
    assert test.returncode == 0, test.stderr[-2000:]
    n_test = sum(1 for _ in (real_glue / "STS-B" / "test.tsv").open()) - 1
    check_stsb_submission(tmp_path / "test" / "STS-B.tsv", n_test)


def test_scores_are_clipped_and_labels_spelled_as_in_the_files():
    stsb, rte, sst2 = get_task("stsb"), get_task("rte"), get_task("sst2")
    assert [format_prediction(stsb, v) for v in (-0.7, 2.71828, 6.2)] == ["0.000", "2.718", "5.000"]
    assert [format_prediction(rte, i) for i in (0, 1)] == ["entailment", "not_entailment"]
    assert [format_prediction(sst2, i) for i in (0, 1)] == ["0", "1"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_submission_files_of_every_task(task, glue_fixtures, token_cache, tmp_path):
    spec = get_task(task)
    run_dir = make_adapter(tmp_path / "run", task)
    data = [f"paths.ag_news_dir={glue_fixtures / 'ag_news'}", f"paths.glue_dir={glue_fixtures}"]
    cfg = compose_eval(
        [
            f"adapter={run_dir}",
            "split=test",
            f"data.cache_dir={token_cache}",
            *data,
            "trainer.enable_progress_bar=false",
        ],
        tmp_path / "eval",
    )
    results = evaluate(cfg)
    assert set(results["predictions"]) == set(spec.leaderboard_files)
    for split, name in spec.leaderboard_files.items():
        path = tmp_path / "eval" / name
        delimiter = "," if name.endswith(".csv") else "\t"
        lines = path.read_text().splitlines()
        assert lines[0] == ("ID,Label" if name.endswith(".csv") else "index\tprediction")
        rows = [line.split(delimiter) for line in lines[1:]]
        assert len(rows) == results["rows"][split] > 0
        assert [int(i) for i, _ in rows] == list(range(len(rows)))  # every test row, in index order
        if spec.is_regression:
            assert all(0.0 <= float(p) <= 5.0 for _, p in rows)
        else:
            assert {p for _, p in rows} <= set(spec.label_names)
    assert (tmp_path / "eval" / "eval_results.json").is_file()


def test_eval_errors_name_the_fix(tmp_path, glue_fixtures):
    with pytest.raises(ConfigError, match="adapter/"):
        evaluate(compose_eval([f"adapter={tmp_path / 'missing'}"], tmp_path / "e1"))
    run_dir = make_adapter(tmp_path / "run", "qnli")
    with pytest.raises(ConfigError, match="labels"):
        evaluate(compose_eval([f"adapter={run_dir}", "task=sst2"], tmp_path / "e2"))
    # Another task with the same labels is evaluated (QNLI's head scores RTE's entailment).
    rte = [
        f"adapter={run_dir}",
        "task=rte",
        f"paths.glue_dir={glue_fixtures}",
        "trainer.enable_progress_bar=false",
    ]
    assert evaluate(compose_eval(rte, tmp_path / "e4"))["task"] == "rte"
    # A pickle in place of the safetensors file is never unpickled.
    adapter = run_dir / "adapter"
    shutil.move(adapter / "adapter_model.safetensors", adapter / "adapter_model.bin")
    with pytest.raises(DataError, match="safetensors"):
        evaluate(compose_eval([f"adapter={run_dir}", f"paths.glue_dir={glue_fixtures}"], tmp_path / "e3"))
