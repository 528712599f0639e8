"""The comparison table of a multi-task sweep: one row per variant (LoRA, full fine-tuning, the peer
stack, ...), one column per task, as the paper's Table 2 sets them out.

Each cell is the median over seeds with its min-max, under both protocols: the best evaluation of
each run (the paper's) and its last one. Beside the scores: trainable parameters, optimizer state,
the size of what a run ships (adapter, or the whole model for full fine-tuning), training time and
training throughput;
then each variant against full fine-tuning and each of our variants against the peer's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glue_lora.data.tasks import TASKS
from glue_lora.reports.runs import Run
from glue_lora.reports.stats import Stats
from glue_lora.settings.method import run_label, run_method_name

# Overrides that name a variant; a sweep that also varies anything else (a learning rate) has more
# than one configuration per variant and task, which a median over seeds must not mix.
VARIANT_KEYS = {"variant", "stack"}
PROTOCOLS = {"best": "best evaluation (the paper's protocol)", "last": "last evaluation"}
STACK_NAMES = {"ours": "glue-lora", "peer": "Trainer + peft"}


def variant_name(results: dict[str, Any]) -> str:
    """``glue-lora r8-a16``, ``glue-lora full``, ``glue-lora vera``, ``Trainer + peft r8-a16``: stack,
    then method (the LoRA setting for LoRA)."""
    stack = results.get("stack", "ours")
    return f"{STACK_NAMES.get(stack, stack)} {run_label(results)}"


def run_score(results: dict[str, Any], protocol: str) -> float | None:
    """The primary dev metric in percent at the best evaluation, or at the last one."""
    metric = results["metric"]
    if protocol == "best":
        value = results.get("score")
    else:
        history = results.get("history") or []
        value = history[-1]["dev"].get(metric) if history else None
    return None if value is None else 100.0 * float(value)


@dataclass
class Cell:
    """The finished runs of one variant on one task."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    def scores(self, protocol: str) -> list[float]:
        values = (run_score(r, protocol) for r in self.runs)
        return [v for v in values if v is not None and not math.isnan(v)]

    def stats(self, protocol: str) -> Stats | None:
        scores = self.scores(protocol)
        return Stats.of(scores) if scores else None

    def median(self, protocol: str) -> float | None:
        stats = self.stats(protocol)
        return stats.median if stats else None

    def figure(self, key: str, *path: str) -> float | None:
        """The median over runs of a number stored in results.json at ``path``/``key``."""
        values = []
        for run in self.runs:
            node: Any = run
            for part in path:
                node = (node or {}).get(part)
            value = (node or {}).get(key)
            if isinstance(value, int | float):
                values.append(float(value))
        return float(np.median(values)) if values else None


def cells(runs: Sequence[Run]) -> dict[str, dict[str, Cell]]:
    """{variant: {task: Cell}} over the finished runs, variants in a stable order."""
    table: dict[str, dict[str, Cell]] = {}
    method_of: dict[str, str] = {}
    for run in runs:
        if run.results is None:
            continue
        name = variant_name(run.results)
        method_of.setdefault(name, run_method_name(run.results))
        table.setdefault(name, {}).setdefault(run.task, Cell()).runs.append(run.results)

    def order(name: str) -> tuple:
        # Ours before the peer's; in each, plain LoRA first and full fine-tuning last.
        method = method_of[name]
        return (not name.startswith(STACK_NAMES["ours"]), method == "full", method != "lora", name)

    return {name: table[name] for name in sorted(table, key=order)}


def task_columns(table: dict[str, dict[str, Cell]]) -> list[str]:
    names = list(TASKS)
    found = {task for row in table.values() for task in row}
    return sorted(found, key=lambda t: (names.index(t) if t in names else len(names), t))


def _average(row: dict[str, Cell], tasks: Sequence[str], protocol: str) -> float | None:
    medians = [row[t].median(protocol) if t in row else None for t in tasks]
    return None if any(m is None for m in medians) else float(np.mean(medians))


def _score_cell(cell: Cell | None, protocol: str) -> str:
    stats = cell.stats(protocol) if cell else None
    if stats is None:
        return ""
    return f"{stats.median:.1f} ({stats.min:.1f}-{stats.max:.1f}, n={stats.n})"


def _fmt(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return ""
    value = round(value, digits) + 0.0  # -0.04 rounds to -0.0; + 0.0 makes it 0.0, shown "+0.0"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _score_table(table: dict[str, dict[str, Cell]], tasks: Sequence[str], protocol: str) -> list[str]:
    head = ["variant", *tasks, "average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, row in table.items():
        cells_ = [_score_cell(row.get(t), protocol) for t in tasks]
        lines.append("| " + " | ".join([name, *cells_, _fmt(_average(row, tasks, protocol))]) + " |")
    return lines


def _cost_table(table: dict[str, dict[str, Cell]], tasks: Sequence[str]) -> list[str]:
    head = [
        "variant",
        "trainable parameters",
        "optimizer state MB",
        "checkpoint MB",
        "train minutes (all tasks)",
        *(f"samples/s {task}" for task in tasks),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, row in table.items():
        first = row[next(t for t in tasks if t in row)]
        minutes = [row[t].figure("seconds", "train") for t in tasks if t in row]
        total = sum(m for m in minutes if m is not None) / 60 if minutes else None
        trainable = first.figure("trainable", "params")
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    f"{int(trainable):,}" if trainable is not None else "",
                    _fmt(first.figure("optimizer_state_mb", "train"), 2),
                    _fmt(first.figure("adapter_mb", "sizes"), 2),
                    _fmt(total, 1),
                    *(
                        _fmt(row[t].figure("samples_per_second", "train"), 1) if t in row else ""
                        for t in tasks
                    ),
                ]
            )
            + " |"
        )
    return lines


def _difference_lines(
    table: dict[str, dict[str, Cell]], tasks: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> list[str]:
    head = ["difference", "protocol", *tasks, "average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for a, b in pairs:
        for protocol in PROTOCOLS:
            diffs = []
            for t in tasks:
                ma = table[a][t].median(protocol) if t in table[a] else None
                mb = table[b][t].median(protocol) if t in table[b] else None
                diffs.append(None if ma is None or mb is None else ma - mb)
            avg_a, avg_b = _average(table[a], tasks, protocol), _average(table[b], tasks, protocol)
            avg = None if avg_a is None or avg_b is None else avg_a - avg_b
            cells_ = [_fmt(d, sign=True) for d in diffs]
            lines.append("| " + " | ".join([f"{a} − {b}", protocol, *cells_, _fmt(avg, sign=True)]) + " |")
    return lines


def _ratio(table: dict[str, dict[str, Cell]], a: str, b: str, key: str, *path: str) -> float | None:
    """How many times ``b``'s figure is ``a``'s, on the first task both variants ran."""
    task = next((t for t in table[a] if t in table[b]), None)
    if task is None:
        return None
    va, vb = table[a][task].figure(key, *path), table[b][task].figure(key, *path)
    return vb / va if va and vb else None


def comparable_runs(configs: Sequence[Any]) -> list[Run] | None:
    """The runs of summary configurations that differ in their variant only (and in task and seed);
    None when they also differ in another override, e.g. the learning rates of a search."""
    if any(set(c.swept) - VARIANT_KEYS for c in configs):
        return None
    return [run for c in configs for run in c.runs]


def comparison_markdown(runs: Sequence[Run] | None) -> str | None:
    """The comparison section of a summary; None when the runs hold fewer than two variants."""
    table = cells(runs or [])
    if len(table) < 2:
        return None
    tasks = task_columns(table)
    lines = ["## By variant", ""]
    for protocol, title in PROTOCOLS.items():
        lines += [
            f"Dev score in percent, {title}: median over seeds (min-max, n seeds); "
            "average: mean of the task medians.",
            "",
            *_score_table(table, tasks, protocol),
            "",
        ]
    lines += [
        "Cost: medians over runs. Optimizer state: bytes of the optimizer's state tensors at the end "
        "of training. Checkpoint: what a run ships (the adapter directory; the whole model for full "
        "fine-tuning). Train minutes: wall time of training with its evaluations, summed over tasks. "
        "Samples/s: training rows per second of training time (evaluations excluded), per task.",
        "",
        *_cost_table(table, tasks),
        "",
    ]
    names = list(table)
    full = [n for n in names if n.startswith(STACK_NAMES["ours"]) and n.endswith(" full")]
    pairs = [(n, full[0]) for n in names if full and n != full[0] and n.startswith(STACK_NAMES["ours"])]
    for name in names:
        if name.startswith(STACK_NAMES["peer"]):
            ours = STACK_NAMES["ours"] + name[len(STACK_NAMES["peer"]) :]
            if ours in table:
                pairs.append((ours, name))
    if pairs:
        lines += ["Differences of the medians, in points:", "", *_difference_lines(table, tasks, pairs), ""]
        for a, b in pairs:
            if b in full:
                state = _ratio(table, a, b, "optimizer_state_mb", "train")
                size = _ratio(table, a, b, "adapter_mb", "sizes")
                if state or size:
                    lines.append(
                        f"- {a} against {b}: optimizer state {_fmt(state)}x smaller, "
                        f"checkpoint {_fmt(size)}x smaller."
                    )
        lines.append("")
    return "\n".join(lines)
