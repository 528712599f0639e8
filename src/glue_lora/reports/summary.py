"""Summaries of many runs: results.json of every job grouped by configuration, statistics over seeds,
the papers' scores beside them (reports/paper.py), failed jobs listed; written as summary.csv and
summary.md.

A configuration is (task, model, method) plus every other override that differs between the runs
read (learning rate, max length, ...); the seed is what varies inside one configuration. The method
is named as ``method_label`` names it: ``r8-a16`` for LoRA, ``dora-r8-a16``, ``vera``, ``bitfit``,
``full``; runs recorded before methods existed are LoRA (or full fine-tuning where ``lora`` is null).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glue_lora.data.tasks import TASKS
from glue_lora.reports.comparison import comparable_runs, comparison_markdown
from glue_lora.reports.paper import PaperScore, paper_row, paper_source
from glue_lora.reports.provenance import provenance_markdown
from glue_lora.reports.runs import Run, find_runs
from glue_lora.reports.stats import Stats
from glue_lora.utils.artifacts import atomic_open
from glue_lora.utils.shareable import shareable_path

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
STATS = ("median", "mean", "std", "min", "max")
# Overrides that do not tell configurations apart: the seed varies inside one; task, model and the
# method (with its LoRA setting) have their own column; the rest only moves files or changes what is printed.
NOT_CONFIGURATION = (
    "seed",
    "task",
    "model",
    "lora",
    "lora.r",
    "lora.alpha",
    "method",
    "experiment",
    "logger",
    "resume",  # a resumed sweep's jobs differ from its first attempt's only in this
    "ckpt_path",
)
NOT_CONFIGURATION_PREFIXES = ("paths.", "hydra.", "logger.", "data.cache_dir", "trainer.enable_")


@dataclass
class Configuration:
    """The runs of one configuration and their statistics over seeds, in percent."""

    task: str
    model: str
    lora: dict[str, Any] | None
    swept: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    method: dict[str, Any] | None = None  # as the runs recorded it; None: LoRA, or full (lora null)

    @property
    def run(self) -> Run:
        """A run standing for the configuration's method (its finished one, where there is one)."""
        return (self.finished or self.runs)[0]

    @property
    def variant(self) -> str:
        """The method: ``r8-a16`` (LoRA), ``dora-r8-a16``, ``vera``, ``bitfit``, ``full``."""
        return self.run.label

    @property
    def label(self) -> str:
        return " ".join([self.model, self.variant, *(f"{k}={v}" for k, v in self.swept.items())])

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.status == "ok"]

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "failed"]

    @property
    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.status == "unfinished"]

    @property
    def metric(self) -> str | None:
        """The task's primary metric (from results.json, else the task table)."""
        for run in self.finished:
            return run.results["metric"]
        spec = TASKS.get(self.task)
        return spec.primary_metric if spec else None

    def stats(self) -> dict[str, Stats]:
        """Statistics of every dev metric over the finished runs (percent), primary metric first."""
        values: dict[str, list[float]] = {}
        for run in self.finished:
            for name, value in run.metrics().items():
                values.setdefault(name, []).append(100.0 * value)
        order = sorted(values, key=lambda m: (m != self.metric, m))
        return {m: Stats.of(values[m]) for m in order}

    @property
    def paper(self) -> float | None:
        """The paper's score for this task, model and method (at the paper's rank), where one exists."""
        return self.paper_row.score if self.paper_row else None

    @property
    def paper_row(self) -> PaperScore | None:
        run = self.run
        return paper_row(self.task, self.model, self.lora, method=run.method_name, rank=run.rank)

    @property
    def trainable(self) -> int | None:
        counts = [r.results["params"]["trainable"] for r in self.finished if "params" in r.results]
        return int(np.median(counts)) if counts else None


def _task_order(task: str) -> int:
    names = list(TASKS)
    return names.index(task) if task in names else len(names)


def _natural(value: str) -> tuple:
    """Numbers in numeric order (2 before 10), then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def group_runs(runs: Sequence[Run]) -> list[Configuration]:
    """Group runs into configurations; the overrides that differ between runs become columns."""
    keys = sorted({k for run in runs for k in run.overrides})
    swept = [
        k
        for k in keys
        if k not in NOT_CONFIGURATION
        and not k.startswith(NOT_CONFIGURATION_PREFIXES)
        and len({run.overrides.get(k) for run in runs}) > 1
    ]
    groups: dict[tuple, Configuration] = {}
    for run in runs:
        values = {k: run.overrides.get(k, "") for k in swept}
        # By label (method, rank, alpha): a failed job's config has no resolved targets, results.json does.
        key = (run.task, run.model, run.label, tuple(values.items()))
        config = Configuration(run.task, run.model, run.lora, values, method=run.method)
        groups.setdefault(key, config).runs.append(run)
    for config in groups.values():
        config.runs.sort(key=lambda r: (str(r.seed), str(r.path)))

    def order(c: Configuration) -> tuple:
        # LoRA by rank, then full fine-tuning (as before methods existed), then the other methods.
        name = c.run.method_name
        kind = 0 if name == "lora" else 1 if name == "full" else 2
        rank = float(c.lora.get("r") or 0) if kind == 0 and c.lora else 0.0
        swept = tuple(_natural(v) for v in c.swept.values())
        return (_task_order(c.task), c.task, c.model, kind, rank, c.variant, swept)

    return sorted(groups.values(), key=order)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _error_lines(config: Configuration) -> str:
    return " | ".join(f"{r.path.name}: {r.error}" for r in config.failed)  # the job's number, no path


def summary_csv(configs: Sequence[Configuration]) -> str:
    """One row per configuration: primary-metric statistics, paper and difference, other metrics."""
    swept = list(dict.fromkeys(k for c in configs for k in c.swept))
    others = list(dict.fromkeys(m for c in configs for m in list(c.stats())[1:]))
    header = [
        "task",
        "model",
        "method",
        *swept,
        "n",
        "failed",
        "unfinished",
        "metric",
        *STATS,
        "paper",
        "paper_source",
        "diff",
        "trainable",
        *(f"{m}_{s}" for m in others for s in STATS),
        "errors",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for c in configs:
        stats = c.stats()
        primary = stats.get(c.metric)
        paper = c.paper
        diff = primary.median - paper if primary and paper is not None else None
        row = [c.task, c.model, c.variant, *(c.swept.get(k, "") for k in swept)]
        row += [len(c.finished), len(c.failed), len(c.unfinished), c.metric or ""]
        row += [_fmt(getattr(primary, s)) if primary else "" for s in STATS]
        source = c.paper_row.source if paper is not None else ""
        row += [_fmt(paper, 2), source, _fmt(diff), c.trainable if c.trainable is not None else ""]
        for m in others:
            row += [_fmt(getattr(stats[m], s)) if m in stats else "" for s in STATS]
        row.append(_error_lines(c))
        writer.writerow(row)
    return out.getvalue()


def summary_markdown(
    configs: Sequence[Configuration], title: str = "Sweep summary", base: Path | None = None
) -> str:
    """A readable table of the same figures (one decimal, as in the paper), the variants side by side
    where the runs hold several (reports/comparison.py), then failed jobs: each named relative to
    ``base`` (the summary's directory), or as ``utils.shareable`` names a path outside it."""

    def shown(path: Path) -> str:
        if base is not None and path.resolve().is_relative_to(base.resolve()):
            return str(path.resolve().relative_to(base.resolve()))
        return shareable_path(path)

    swept = list(dict.fromkeys(k for c in configs for k in c.swept))
    head = ["task", "model", "method", *swept, "n", "metric", "median", "trainable", "mean ± std"]
    head += ["min – max", "paper", "Δ", "other dev metrics (median)"]
    sources = list(dict.fromkeys(c.paper_row.source for c in configs if c.paper_row is not None))
    cited = "; ".join(f"[{i + 1}] {paper_source(k)}" for i, k in enumerate(sources))
    lines = [
        f"# {title}",
        "",
        "Dev-set scores in percent over seeds (std: sample standard deviation); trainable: parameters "
        "trained (adapter and head). paper: the score a paper reports for this task, model and method "
        "at the paper's rank, where one does" + (f" ({cited})." if cited else "."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for c in configs:
        stats = c.stats()
        p = stats.get(c.metric)
        paper = c.paper
        n = f"{len(c.finished)}" + (f" ({len(c.failed)} failed)" if c.failed else "")
        n += f" ({len(c.unfinished)} unfinished)" if c.unfinished else ""
        cells = [c.task, c.model, c.variant, *(c.swept.get(k, "") for k in swept), n]
        cells.append(c.metric or "")
        trainable = f"{c.trainable:,}" if c.trainable is not None else ""
        if p:
            spread = f"{p.mean:.1f} ± {p.std:.1f}" if p.n > 1 else f"{p.mean:.1f}"
            cells += [f"{p.median:.1f}", trainable, spread, f"{p.min:.1f} – {p.max:.1f}"]
        else:
            cells += ["", trainable, "", ""]
        ref = f" [{sources.index(c.paper_row.source) + 1}]" if paper is not None else ""
        cells.append(_fmt(paper, 2 if paper is not None and round(paper, 1) != paper else 1) + ref)
        cells.append(f"{p.median - paper:+.1f}" if p and paper is not None else "")
        cells.append(", ".join(f"{m} {s.median:.1f}" for m, s in list(stats.items())[1:]))
        lines.append("| " + " | ".join(cells) + " |")
    if by_variant := comparison_markdown(comparable_runs(configs)):
        lines += ["", by_variant.rstrip("\n")]
    if pooled := provenance_markdown(configs):
        lines += ["", pooled.rstrip("\n")]
    failed = [(c, r) for c in configs for r in c.failed]
    if failed:
        lines += ["", "## Failed jobs", ""]
        for c, r in failed:
            lines.append(f"- `{shown(r.path)}` ({c.task}, {c.label}, seed {r.seed}): {r.error}")
    unfinished = [(c, r) for c in configs for r in c.unfinished]
    if unfinished:
        lines += ["", "## Unfinished jobs (running, or stopped without an error)", ""]
        lines += [f"- `{shown(r.path)}` ({c.task}, {c.label}, seed {r.seed})" for c, r in unfinished]
    return "\n".join(lines) + "\n"


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def write_summary(
    out_dir: str | Path, configs: Sequence[Configuration], title: str = "Sweep summary"
) -> None:
    """Write summary.csv and summary.md into ``out_dir`` (each replaced atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out_dir / SUMMARY_CSV, summary_csv(configs))
    _atomic_write_text(out_dir / SUMMARY_MD, summary_markdown(configs, title, out_dir))


def summarise(
    dirs: Iterable[str | Path], out_dir: str | Path, title: str = "Sweep summary"
) -> list[Configuration]:
    """Find every run under ``dirs``, group them, and write the summary files into ``out_dir``."""
    configs = group_runs(find_runs(dirs))
    write_summary(out_dir, configs, title)
    return configs
