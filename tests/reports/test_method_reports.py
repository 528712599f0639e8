"""Reports over runs of several methods (method=lora,dora,vera,bitfit,full): one row, colour and marker
per method, trainable parameters beside the score, and each method's paper score (fast, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from glue_lora.reports.comparison import variant_name
from glue_lora.reports.paper import paper_row, paper_table
from glue_lora.reports.plots import _by_method, _families, plot_params
from glue_lora.reports.runs import find_runs, write_failure
from glue_lora.reports.study import study_rows, variant
from glue_lora.reports.summary import SUMMARY_CSV, SUMMARY_MD, group_runs, summarise
from glue_lora.settings.method import MethodSettings, run_label, run_method_name, run_rank
from tests.helpers.paper import paper_score
from tests.reports.test_summary import PNG_MAGIC, R8, read_csv, write_run

METHODS = {
    "lora": MethodSettings(name="lora"),
    "dora": MethodSettings(name="dora", peft_options={"use_dora": True}),
    "vera": MethodSettings(
        name="vera", peft_type="vera", uses_lora_group=False, peft_options={"r": 1024, "d_initial": 0.1}
    ),
    "bitfit": MethodSettings(name="bitfit", trains="biases", peft_type=None, uses_lora_group=False),
    "full": MethodSettings(name="full", trains="all", peft_type=None, uses_lora_group=False),
}
# Trainable parameters of each on roberta-base with a 2-class head (a dry run; tests/model/
# test_method_parameter_counts.py checks the adapters against the papers).
TRAINABLE = {"lora": 887_042, "dora": 905_474, "vera": 635_138, "bitfit": 694_274, "full": 124_647_170}


def write_method_run(run_dir: Path, name: str, seed: int, score: float, task: str = "mrpc") -> dict:
    method = METHODS[name]
    lora = R8 if method.uses_lora_group else None
    results = write_run(
        run_dir,
        task=task,
        lora=lora,
        seed=seed,
        dev={"accuracy": score, "f1": score},
        trainable=TRAINABLE[name],
        overrides=[f"method={name}"],
        extra={"method": method.as_dict()},
    )
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({**config, "method": method.as_dict()}))
    return results


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    job = 0
    for name in METHODS:
        for seed in range(2):
            write_method_run(sweep / str(job), name, seed, 0.80 + 0.01 * seed)
            job += 1
    # A VeRA job that failed: its label comes from the config Hydra saved.
    failed = sweep / str(job)
    write_method_run(failed, "vera", 2, 0.8)
    (failed / "results.json").unlink()
    write_failure(failed, RuntimeError("boom"))
    return sweep


def test_labels_of_new_and_old_results():
    assert run_label({"method": METHODS["dora"].as_dict(), "lora": R8}) == "dora-r8-a16"
    assert run_label({"method": METHODS["vera"].as_dict(), "lora": None}) == "vera"
    assert run_label({"method": METHODS["bitfit"].as_dict(), "lora": None}) == "bitfit"
    assert run_label({"method": METHODS["full"].as_dict(), "lora": None}) == "full"
    # A VeRA run's config still holds the (unused) lora group: the label is the method's.
    assert run_label({"method": METHODS["vera"].as_dict(), "lora": R8}) == "vera"
    # Results written before methods existed: LoRA, or full fine-tuning where lora is null.
    assert run_label({"lora": R8}) == "r8-a16" and run_label({"lora": None}) == "full"
    assert run_method_name({"lora": R8}) == "lora" and run_method_name({"lora": None}) == "full"
    assert run_rank({"lora": R8}) == 8 and run_rank({"method": METHODS["vera"].as_dict()}) == 1024
    # A record that no longer passes the checks keeps its name.
    assert run_label({"method": {"name": "dora", "trains": "nonsense"}, "lora": R8}) == "dora-r8-a16"


def test_summary_has_one_row_per_method_with_trainable_and_paper(sweep: Path):
    configs = summarise([sweep], sweep)
    assert [c.variant for c in configs] == ["r8-a16", "full", "bitfit", "dora-r8-a16", "vera"]
    assert [len(c.finished) for c in configs] == [2, 2, 2, 2, 2]
    vera = configs[-1]
    assert len(vera.failed) == 1 and vera.trainable == TRAINABLE["vera"]

    rows = {r["method"]: r for r in read_csv(sweep / SUMMARY_CSV)}
    assert list(rows) == ["r8-a16", "full", "bitfit", "dora-r8-a16", "vera"]
    # roberta_base on MRPC: LoRA and full from the LoRA paper's Table 2, BitFit and VeRA from VeRA's.
    assert float(rows["r8-a16"]["paper"]) == 89.7 and rows["r8-a16"]["paper_source"] == "table2"
    assert float(rows["full"]["paper"]) == 90.2
    assert float(rows["bitfit"]["paper"]) == 92.7 and rows["bitfit"]["paper_source"] == "vera_table2"
    assert float(rows["vera"]["paper"]) == 89.5 and rows["vera"]["paper_source"] == "vera_table2"
    assert rows["dora-r8-a16"]["paper"] == ""  # no paper reports DoRA on RoBERTa-base
    assert int(rows["vera"]["trainable"]) == TRAINABLE["vera"]

    md = (sweep / SUMMARY_MD).read_text()
    assert "| mrpc | roberta_base | vera | 2 (1 failed) | accuracy | 80.5 | 635,138 |" in md
    assert "| mrpc | roberta_base | dora-r8-a16 | 2 | accuracy | 80.5 | 905,474 |" in md
    assert "89.5 [2]" in md and "[2] Kopiczko et al. (2024), VeRA, arXiv 2310.11454, Table 2" in md
    assert "(mrpc, roberta_base vera, seed 2): RuntimeError: boom" in md


def test_old_results_without_method_still_group_as_lora_and_full(tmp_path: Path):
    write_run(tmp_path / "0", task="rte", lora=R8, seed=0)
    write_run(tmp_path / "1", task="rte", lora=None, seed=0, overrides=["lora=none"])
    runs = find_runs([tmp_path])
    assert all(r.method is None for r in runs)
    configs = group_runs(runs)
    assert [(c.variant, c.paper) for c in configs] == [("r8-a16", 86.6), ("full", 78.7)]


def test_study_comparison_and_plots_name_each_method(sweep: Path, tmp_path: Path):
    results = [r.results for r in find_runs([sweep]) if r.results]
    assert {variant(r) for r in results} == {"r8-a16", "dora-r8-a16", "vera", "bitfit", "full"}
    rows = {row["variant"]: row for row in study_rows(results)}
    assert rows["vera"]["trainable"] == TRAINABLE["vera"] and rows["vera"]["runs"] == 2
    assert variant_name(results[0]).startswith("glue-lora ")
    assert {variant_name(r) for r in results} >= {"glue-lora vera", "glue-lora dora-r8-a16"}
    old = json.loads(json.dumps({**results[0], "lora": None}))
    old.pop("method")
    assert variant(old) == "full" and variant_name(old) == "glue-lora full"

    configs = group_runs(find_runs([sweep]))
    (family,) = _families(configs).values()
    assert list(_by_method(family)) == ["lora", "full", "bitfit", "dora", "vera"]
    path = plot_params(configs, tmp_path / "params.png")
    assert path is not None and path.read_bytes()[:8] == PNG_MAGIC


def test_paper_rows_of_pissa_and_vera_tables():
    # PiSSA (arXiv 2404.02948) Table 3, DeBERTa-v3-base: the averages the issue quotes.
    table = paper_table()["pissa_table3"]
    averages = {k.removeprefix("deberta_v3_base_"): row["avg"] for k, row in table.items()}
    assert averages["full"] == 88.25 and averages["lora_g"] == 88.50 and averages["lora_k"] == 88.62
    assert averages["dora"] == 88.98 and averages["adalora"] == 89.46 and averages["pissa"] == 89.83
    for name, row in table.items():  # each row's average is the mean of its eight tasks (to 0.01)
        tasks = [row[t] for t in ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")]
        assert sum(tasks) / 8 == pytest.approx(row["avg"], abs=0.011), name
    for name, row in paper_table()["vera_table2"].items():  # six tasks, averages to 0.1
        tasks = [row[t] for t in ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")]
        assert sum(tasks) / 6 == pytest.approx(row["avg"], abs=0.051), name

    assert paper_score("cola", "deberta_v3_base", None, method="pissa", rank=8) == 73.12
    assert paper_score("cola", "deberta_v3_base", None, method="pissa", rank=16) is None  # not its rank
    assert paper_score("rte", "deberta_v3_base", None, method="adalora", rank=4) == 88.09  # no rank given
    assert paper_score("mrpc", "deberta_v3_base", R8, method="lora", rank=8) == 89.95  # LoRA_G
    assert paper_score("mnli", "deberta_v3_base", None, method="full") == 89.90
    assert paper_score("rte", "roberta_large", None, method="vera", rank=256) == 85.9
    assert paper_score("rte", "roberta_large", None, method="vera", rank=1024) is None
    assert paper_score("mnli", "roberta_base", None, method="vera", rank=1024) is None  # VeRA ran no MNLI
    assert paper_row("stsb", "roberta_base", None, method="vera", rank=1024).trainable == 43_000
    # Every comparison points at a row that exists, and LoRA rows at the rank of the `lora` section.
    tables = paper_table()
    for model, methods in tables["compare"].items():
        for entry in methods.values():
            assert entry["row"] in tables[entry["table"]] and entry["table"] in tables["sources"]
        if "lora" in methods and model in tables["lora"]:
            assert methods["lora"]["r"] == tables["lora"][model]["r"]
