"""Fixtures shared by the tests (helpers are in tests/helpers/): GLUE-layout files, a token cache,
the real GLUE directory. Runs offline: no Hub, no W&B server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.glue_files import write_all
from tests.helpers.runs import REAL_GLUE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def glue_fixtures(tmp_path_factory) -> Path:
    """A GLUE directory (and ag_news/) with small files in every task's real layout."""
    return write_all(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("token_cache")


@pytest.fixture
def real_glue() -> Path:
    if not REAL_GLUE or not Path(REAL_GLUE).is_dir():
        pytest.skip("GLUE_DIR is not set to a local GLUE directory")
    return Path(REAL_GLUE)
