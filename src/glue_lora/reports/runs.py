"""Reading run directories: results.json of a finished run, failed.json of a failed one, the
overrides and config Hydra saved; every run found under a set of run or sweep directories."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from glue_lora.settings.method import run_label, run_method_name, run_rank
from glue_lora.utils.artifacts import atomic_write_json
from glue_lora.utils.run_files import ADAPTER, CHECKPOINTS, FAILED, RESULTS

# Folders inside a run directory that never hold another run.
SKIP_DIRS = {CHECKPOINTS, ADAPTER, "csv", "wandb", "tensorboard", ".hydra", ".submitit", "__pycache__"}


@dataclass
class Run:
    """One run directory: finished (``results``), failed (``error``) or neither (running or killed)."""

    path: Path
    task: str
    model: str
    lora: dict[str, Any] | None
    seed: Any
    overrides: dict[str, str]
    results: dict[str, Any] | None = None
    error: str | None = None
    method: dict[str, Any] | None = None  # None: recorded before methods existed (LoRA, or full)

    @property
    def label(self) -> str:
        """The method as summaries name it: ``r8-a16`` (LoRA), ``dora-r8-a16``, ``vera``, ``full``."""
        return run_label({"method": self.method, "lora": self.lora})

    @property
    def method_name(self) -> str:
        """``lora``, ``dora``, ``vera``, ``full`` ...: what the papers' rows are keyed by."""
        return run_method_name({"method": self.method, "lora": self.lora})

    @property
    def rank(self) -> int | None:
        return run_rank({"method": self.method, "lora": self.lora})

    @property
    def status(self) -> str:
        if self.results is not None:
            return "ok"
        return "failed" if self.error is not None else "unfinished"

    def metrics(self) -> dict[str, float]:
        """Every dev metric at the best checkpoint, as fractions; MNLI's mismatched as ``<m>_mismatched``."""
        assert self.results is not None
        values = dict(self.results.get("dev") or {})
        for key, split in self.results.items():
            if key.startswith("dev_") and isinstance(split, dict):
                values.update({f"{name}_{key[4:]}": v for name, v in split.items()})
        return {k: float(v) for k, v in values.items() if isinstance(v, int | float)}


def write_failure(job_dir: str | Path, error: BaseException) -> None:
    """Record in ``failed.json`` that the job in ``job_dir`` failed, with the first line of its error."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    atomic_write_json(Path(job_dir) / FAILED, {"error": f"{type(error).__name__}: {first}"[:500]})


def _read_overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    overrides = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def _read_config(run_dir: Path) -> dict[str, Any]:
    """The composed config Hydra saved before the job ran (what a failed job was asked to do)."""
    path = run_dir / ".hydra" / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in (RESULTS, FAILED, ".hydra/config.yaml"))


def load_run(run_dir: Path) -> Run:
    """Read one run directory (results.json, failed.json, .hydra/)."""
    overrides = _read_overrides(run_dir)
    results_path = run_dir / RESULTS
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        return Run(
            run_dir,
            results.get("task", "?"),
            results.get("model", "?"),
            results.get("lora"),
            results.get("seed"),
            overrides,
            results=results,
            method=results.get("method"),
        )
    config = _read_config(run_dir)
    failed = run_dir / FAILED
    error = json.loads(failed.read_text()).get("error", "") if failed.is_file() else None
    return Run(
        run_dir,
        (config.get("task") or {}).get("name", overrides.get("task", "?")),
        (config.get("model") or {}).get("name", overrides.get("model", "?")),
        config.get("lora"),
        config.get("seed", overrides.get("seed")),
        overrides,
        error=error,
        method=config.get("method"),
    )


def find_runs(dirs: Iterable[str | Path]) -> list[Run]:
    """Every run under ``dirs`` (each a run directory, a sweep directory, or any folder above them)."""
    found: dict[Path, None] = {}
    for top in dirs:
        for root, subdirs, _ in os.walk(Path(top)):
            here = Path(root)
            if _is_run_dir(here):
                found[here.resolve()] = None
                subdirs.clear()
            else:
                subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
    return [load_run(path) for path in found]


def _job_order(run: Run) -> tuple[bool, int, str]:
    name = run.path.name
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def failed_jobs(runs: Iterable[Run]) -> list[Run]:
    """The runs that failed in their latest attempt (failed.json and no results.json), in job order."""
    return sorted((r for r in runs if r.status == "failed"), key=_job_order)


def failed_jobs_table(sweep_dir: Path) -> str | None:
    """A short table of the jobs of ``sweep_dir`` that failed in their latest attempt (failed.json and
    no results.json): job number, the overrides that tell the jobs apart, the error's first line, the
    path of its failed.json. None when no job failed."""
    runs = find_runs([sweep_dir])
    failed = failed_jobs(runs)
    if not failed:
        return None
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    swept = [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1] or keys
    rows = [("job", "overrides", "error", "failed.json")]
    for run in failed:
        overrides = " ".join(f"{k}={run.overrides[k]}" for k in swept if k in run.overrides)
        error = ((run.error or "").strip().splitlines() or ["?"])[0]
        error = error if len(error) <= 100 else error[:99] + "…"
        rows.append((run.path.name, overrides, error, str(run.path / FAILED)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]]) for row in rows]
    head = f"{len(failed)} of {len(runs)} job(s) of the sweep failed (the other jobs' results are kept):"
    return "\n".join([head, *lines])
