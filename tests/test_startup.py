"""`train.py --help` and `--cfg job` answer without importing torch, Lightning, transformers or peft.

Those imports take seconds; the commands that only print must stay well under 2 s. Checked through
``python -X importtime`` (which modules load), not through a timing that a busy machine would break.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.runs import ROOT

HEAVY = ("torch", "lightning", "transformers", "peft", "datasets", "torchmetrics", "wandb")


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]], ids=["help", "cfg-job"])
def test_no_heavy_imports(args):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "task" in done.stdout  # the config (or the help listing its groups) was printed
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "hydra" in imported
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
