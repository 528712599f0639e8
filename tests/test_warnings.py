"""Warnings that are not the user's business stay quiet, so that a new one stands out."""

from __future__ import annotations

import re
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


# Third-party lines a plain run may print, each because the user wants it.
ALLOWED_THIRD_PARTY = (
    r"GPU available: \w+, used: \w+",  # the hardware Lightning found and uses
    r"TPU available: \w+, using: \d+ TPU cores",
    r"Loading `train_dataloader` to estimate number of stepping batches",  # why the start pauses on a big set
    r"`Trainer\.fit` stopped: `max_(steps|epochs)=\d+` reached",  # why training ended
)
LOGGER = re.compile(r"^\[[^\]]+\]\[([\w.]+)\]\[\w+\] - ")


def third_party_lines(output: str) -> list[str]:
    """Lines of a library's logger, its warnings (they name a file in site-packages), progress bars."""
    found = []
    for line in output.splitlines():
        logger = LOGGER.match(line)
        if logger and not logger.group(1).startswith(("glue_lora", "__main__")):
            found.append(line[logger.end() :])
        elif not logger and any(mark in line for mark in ("site-packages", "Warning", "/s]")):
            found.append(line)
    return found


def test_a_default_tiny_run_prints_no_third_party_warning_or_promotion(glue_fixtures, tmp_path):
    done = run_cli(
        "train.py",
        [
            *TINY,
            "trainer.max_steps=3",  # inside the first epoch: no validation before the end
            "trainer.enable_model_summary=true",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={tmp_path / 'tokens'}",  # tokenized here, as a first run does
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env={"PYTHONWARNINGS": "default"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| Name" in output and "trainable params" in output  # the model summary is still printed
    for unwanted in ("Tip", "litlogger", "FLOPs", "could not find the monitored key", "Saving the dataset"):
        assert unwanted not in output, unwanted
    stray = [
        line for line in third_party_lines(output) if not any(re.search(a, line) for a in ALLOWED_THIRD_PARTY)
    ]
    assert stray == [], output[-3000:]
