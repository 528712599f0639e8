"""The sweep directory's record of a search: ``trials.md`` (one row per trial) and ``trials.png``
(the held-out score against each searched value), rewritten after every trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glue_lora.search.study import PRUNED_AT_STEP

RESULTS_YAML = "optimization_results.yaml"  # Optuna sweeper's name: best value and parameters
TRIALS_MD = "trials.md"
TRIALS_PNG = "trials.png"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trials_table(study: Any, names: list[str]) -> str:
    """A markdown table of the study's trials; the score is the held-out value (x 100)."""
    from optuna.trial import TrialState

    best = _best_number(study)
    head = ["trial", "state", "score", *names, "pruned at step", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for trial in study.get_trials(deepcopy=False):
        minutes = None
        # a killed trial is marked FAIL when the search starts again, however long after its death
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):  # both timestamps set
            minutes = round((trial.datetime_complete - trial.datetime_start).total_seconds() / 60, 1)
        score = None if trial.value is None else f"{100 * trial.value:.2f}"
        if trial.number == best:
            score = f"**{score}**"
        row = [trial.number, trial.state.name, score, *(trial.params.get(n) for n in names)]
        row += [trial.user_attrs.get(PRUNED_AT_STEP), minutes]
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _best_number(study: Any) -> int | None:
    try:
        return study.best_trial.number
    except ValueError:  # no trial completed yet
        return None


def plot_trials(study: Any, names: list[str], path: Path) -> None:
    """Score against each searched value, one panel each: filled dots for finished trials, hollow
    for pruned ones (their last held-out score); log axes for log-uniform ranges."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter
    from optuna.distributions import IntLogUniformDistribution, LogUniformDistribution
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
    if not names or not trials:
        return
    fig = Figure(figsize=(5.0 * len(names), 4.0), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False).ravel()
    best = _best_number(study)
    for ax, name in zip(axes, names, strict=True):
        for state, fill in ((TrialState.COMPLETE, "black"), (TrialState.PRUNED, "none")):
            points = [
                (t.params[name], 100 * t.value) for t in trials if t.state == state and name in t.params
            ]
            if points and not isinstance(points[0][0], str):
                xs, ys = zip(*points, strict=True)
                label = "finished" if state == TrialState.COMPLETE else "pruned"
                ax.scatter(xs, ys, marker="o", facecolors=fill, edgecolors="black", label=label)
            elif points:  # a categorical choice: its values in order of appearance
                ax.scatter(
                    [str(x) for x, _ in points],
                    [y for _, y in points],
                    marker="o",
                    facecolors=fill,
                    edgecolors="black",
                )
        for t in trials:
            if t.number == best and name in t.params:
                ax.scatter([t.params[name]], [100 * t.value], marker="*", s=160, color="black", label="best")
        distribution = next((t.distributions[name] for t in trials if name in t.distributions), None)
        if isinstance(distribution, LogUniformDistribution | IntLogUniformDistribution):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labels on the decades only: no overlaps
        ax.set_xlabel(name)
        ax.set_ylabel("held-out score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Search {study.study_name}: {len(trials)} trials")
    fig.savefig(path, dpi=110)


def write_trials(study: Any, sweep_dir: Path, names: list[str]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / TRIALS_MD).write_text(
        f"# Trials of the search {study.study_name}\n\n" + trials_table(study, names)
    )
    plot_trials(study, names, sweep_dir / TRIALS_PNG)
