"""`glue-lora method-search`: the fair method comparison's searches, one after another (issue 29).

Every method of ``experiment=method_comparison`` on each of its tasks gets ``experiment=method_search``
(the same search, trials, seed and held-out rows), each a ``train.py`` process of its own, one at a
time. A finished search's ``optimization_results.yaml``, ``trials.md`` and ``trials.png`` are copied to
``docs/results/method_search/<task>/<method>/``, where ``experiment=method_comparison_tuned`` reads each
method's rate. The same command again resumes: finished searches return at once, a killed one goes on
from its study.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from glue_lora.search.trials import RESULTS_YAML, TRIALS_MD, TRIALS_PNG

CHECKOUT = Path(__file__).resolve().parents[3]
COMPARISON = CHECKOUT / "conf" / "experiment" / "method_comparison.yaml"
KEPT = (RESULTS_YAML, TRIALS_MD, TRIALS_PNG)
BAD_INPUT = 2


@dataclass(frozen=True)
class SearchOutcome:
    task: str
    method: str
    returncode: int
    best: str  # "optimizer.lr=... held-out 0.85", or why there is none


def comparison_grid() -> tuple[list[str], list[str]]:
    """The tasks and methods of ``experiment=method_comparison``'s sweep: one list of them."""
    params = OmegaConf.load(COMPARISON).hydra.sweeper.params
    return str(params.task).split(","), str(params.method).split(",")


def _best(sweep: Path) -> str:
    results = OmegaConf.load(sweep / RESULTS_YAML)
    params = " ".join(f"{key}={value:.3g}" for key, value in results.best_params.items())
    return f"{params}, held-out {results.best_value:.4f}"


def run_search(task: str, method: str, overrides: list[str], sweeps: Path, results: Path) -> SearchOutcome:
    """One method's search on one task in a ``train.py`` process; its files kept under ``results``."""
    sweep = sweeps / task / method
    print(f"== search: {task} {method} ({sweep})", flush=True)
    command = [sys.executable, str(CHECKOUT / "train.py"), "experiment=method_search", f"task={task}"]
    command += [f"method={method}", f"hydra.sweep.dir={sweep}", *overrides]
    done = subprocess.run(command, cwd=CHECKOUT)
    if done.returncode != 0:
        return SearchOutcome(task, method, done.returncode, f"failed (exit {done.returncode}), see above")
    kept = results / task / method
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        shutil.copy2(sweep / name, kept / name)
    return SearchOutcome(task, method, 0, _best(sweep))


def _table(outcomes: list[SearchOutcome]) -> str:
    rows = [f"{o.task:<6} {o.method:<10} {o.best}" for o in outcomes]
    return "\n".join([f"{'task':<6} {'method':<10} best", *rows])


def _parser() -> argparse.ArgumentParser:
    tasks, methods = comparison_grid()
    parser = argparse.ArgumentParser(
        prog="glue-lora method-search",
        description="The fair method comparison's searches (experiment=method_search for every method "
        "of experiment=method_comparison), one at a time and resumable; then the three-seed cells: "
        "python train.py -m experiment=method_comparison_tuned (docs/search.md).",
    )
    parser.add_argument("--tasks", nargs="+", default=tasks, help=f"default: {' '.join(tasks)}")
    parser.add_argument("--methods", nargs="+", default=methods, help=f"default: {' '.join(methods)}")
    parser.add_argument(
        "--sweeps",
        type=Path,
        default=CHECKOUT / "multirun" / "method_search",
        help="where each search's sweep dir <task>/<method> (its study, its trials) goes",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=CHECKOUT / "docs" / "results" / "method_search",
        help="where each finished search's files are copied, as <task>/<method>/ (the tuned cells read them)",
    )
    parser.add_argument("overrides", nargs="*", help="train.py overrides for every search")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if any(o.split("=")[0].lstrip("+~") == "hydra.sweep.dir" for o in args.overrides):
        print(
            "error: hydra.sweep.dir would put every search in one directory; use --sweeps <dir>, under "
            "which each search gets <task>/<method>.",
            file=sys.stderr,
        )
        return BAD_INPUT
    outcomes: list[SearchOutcome] = []
    for method in args.methods:  # method by method, so a stopped run leaves whole methods
        for task in args.tasks:
            outcome = run_search(task, method, args.overrides, args.sweeps.resolve(), args.results.resolve())
            outcomes.append(outcome)
            if outcome.returncode == BAD_INPUT:  # the same overrides would fail every search
                print(_table(outcomes), file=sys.stderr)
                return BAD_INPUT
    failed = [o for o in outcomes if o.returncode != 0]
    print(_table(outcomes), file=sys.stderr if failed else sys.stdout)
    if failed:
        count = f"{len(failed)} of {len(outcomes)} search(es)"
        print(f"error: {count} failed; the same command resumes them.", file=sys.stderr)
        return 1
    return 0
