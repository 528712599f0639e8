"""What a summary pooled: the commits, library versions and hardware of its runs (``provenance`` in
results.json, ``utils.provenance``), and a warning for each configuration whose runs differ in them.

Runs recorded before results carried provenance count as ``unknown``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

UNKNOWN = "unknown"


def _commit(provenance: dict[str, Any] | None) -> str:
    git = (provenance or {}).get("git") or {}
    if not git.get("commit"):
        return UNKNOWN
    return str(git["commit"])[:10] + (" (dirty)" if git.get("dirty") else "")


def _hardware(provenance: dict[str, Any] | None) -> str:
    facts = (provenance or {}).get("hardware")
    if not facts:
        return UNKNOWN
    gpus = Counter(g.get("name") for g in facts.get("gpus") or [])
    if gpus:
        return ", ".join(f"{n} x {name}" for name, n in gpus.items()) + f" (CUDA {facts.get('cuda')})"
    threads = facts.get("torch_threads")  # absent in runs before it was recorded
    used = f", {threads} torch thread{'s' * (threads != 1)}" if threads else ""
    return f"{facts.get('cpu') or 'CPU'} ({facts.get('cpu_cores')} cores{used})"


def run_facts(results: dict[str, Any]) -> dict[str, str]:
    """The facts of one run that a summary pools: commit, each library's version, hardware."""
    provenance = results.get("provenance")
    facts = {"commit": _commit(provenance)}
    versions = (provenance or {}).get("versions") or {}
    names = versions or {"python": None, "torch": None, "transformers": None, "peft": None}
    facts.update({name: str(versions.get(name) or UNKNOWN) for name in names})
    facts["hardware"] = _hardware(provenance)
    return facts


def _tally(configs: Sequence[Any]) -> dict[str, Counter]:
    seen: dict[str, Counter] = {}
    for config in configs:
        for run in config.finished:
            for fact, value in run_facts(run.results or {}).items():
                seen.setdefault(fact, Counter())[value] += 1
    return seen


def provenance_markdown(configs: Sequence[Any]) -> str:
    """A ``## Provenance`` section: each fact's values over the finished runs of ``configs``
    (``reports.summary.Configuration``), with run counts."""
    seen = _tally(configs)
    if not seen:
        return ""
    lines = ["## Provenance", "", "What produced the finished runs (number of runs in brackets).", ""]
    for fact, values in seen.items():
        lines.append(f"- {fact}: " + ", ".join(f"{value} ({n})" for value, n in values.most_common()))
    if warnings := cell_differences(configs):
        lines += ["", "Configurations whose runs differ:", ""]
        lines += [f"- {warning}" for warning in warnings]
    return "\n".join(lines) + "\n"


def cell_differences(configs: Sequence[Any]) -> list[str]:
    """One line for each configuration whose finished runs differ in a fact: their seeds are then
    not repeats of one experiment."""
    found = []
    for config in configs:
        values: dict[str, set[str]] = {}
        for run in config.finished:
            for fact, value in run_facts(run.results or {}).items():
                values.setdefault(fact, set()).add(value)
        differing = {fact: sorted(v) for fact, v in values.items() if len(v) > 1}
        if differing:
            what = "; ".join(f"{fact} {' vs '.join(v)}" for fact, v in differing.items())
            found.append(f"{config.task} {config.label}: its runs differ in {what}")
    return found
