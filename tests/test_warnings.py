"""Warnings that are not the user's business stay quiet, so that a new one stands out."""

from __future__ import annotations

import warnings

import pytest

from glue_lora.data.tasks import get_task
from glue_lora.training.metrics import build_metrics
from glue_lora.utils.quiet import KNOWN_WARNINGS, silence_known_warnings
from tests.helpers.runs import ROOT, TINY, compose_train, model_of, run_cli


def test_pytest_filters_name_each_known_warning_and_no_whole_category():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    filters = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "filterwarnings"
    ]
    assert not [f for f in filters if f.startswith("ignore::")]  # e.g. all DeprecationWarnings
    for pattern, _ in KNOWN_WARNINGS:
        assert any(pattern in f for f in filters), pattern


def test_building_a_lora_model_warns_nothing_once_known_warnings_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        model_of(compose_train(["model=tiny_roberta"]), get_task("rte"))
    assert [str(w.message) for w in caught] == []


def test_our_metrics_warn_nothing():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_metrics(get_task("stsb"))
    assert [str(w.message) for w in caught] == []


@pytest.mark.slow
def test_a_training_run_prints_no_warnings(glue_fixtures, token_cache, tmp_path):
    done = run_cli(
        "train.py",
        [
            *TINY,
            "task=stsb",
            "trainer.max_epochs=1",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env={"PYTHONWARNINGS": "default"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr, done.stderr[-3000:]
