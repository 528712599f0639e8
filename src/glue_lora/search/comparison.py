"""`glue-lora method-search`: the fair method comparison's searches (issue 29).

Every method of ``experiment=method_comparison`` on each of its tasks gets ``experiment=method_search``
(the same search, trials, seed and held-out rows), each a ``train.py`` process of its own: one at a
time, or ``--jobs N`` at once, each on an equal share of the CPU's cores. A finished search's
``optimization_results.yaml``, ``trials.md`` and ``trials.png`` are copied to
``docs/results/method_search/<task>/<method>/``, where ``experiment=method_comparison_tuned`` reads each
method's rate. The same command again resumes: finished searches return at once, a killed one goes on
from its study.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from glue_lora.reports.runs import failed_jobs, find_runs
from glue_lora.search.trials import RESULTS_YAML, TRIALS_MD, TRIALS_PNG
from glue_lora.utils.run_files import FAILED

CHECKOUT = Path(__file__).resolve().parents[3]
COMPARISON = CHECKOUT / "conf" / "experiment" / "method_comparison.yaml"
KEPT = (RESULTS_YAML, TRIALS_MD, TRIALS_PNG)
SEARCH_LOG = "method_search.log"  # a search's output when several run at once
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


def threads_per_search(jobs: int, cores: int | None = None) -> int:
    """Each of ``jobs`` concurrent searches gets an equal share of the cores as torch threads.

    On a small CPU two one-thread searches train a little more in all than one search on both
    cores (docs/search.md): a small model's matrices do not keep two threads busy."""
    return max(1, (cores or os.cpu_count() or 1) // jobs)


def run_search(
    task: str, method: str, overrides: list[str], sweeps: Path, results: Path, jobs: int = 1
) -> SearchOutcome:
    """One method's search on one task in a ``train.py`` process; its files kept under ``results``.

    With ``jobs`` > 1 searches run side by side, so each one's output goes to its sweep dir's
    ``method_search.log`` instead of the terminal, and its threads are capped at its share."""
    sweep = sweeps / task / method
    command = [sys.executable, str(CHECKOUT / "train.py"), "experiment=method_search", f"task={task}"]
    command += [f"method={method}", f"hydra.sweep.dir={sweep}", *overrides]
    if jobs == 1:
        print(f"== search: {task} {method} ({sweep})", flush=True)
        done = subprocess.run(command, cwd=CHECKOUT)
    else:
        sweep.mkdir(parents=True, exist_ok=True)
        print(f"== search: {task} {method} ({sweep}, output in {SEARCH_LOG})", flush=True)
        env = {"OMP_NUM_THREADS": str(threads_per_search(jobs)), **os.environ}  # the user's wins
        with open(sweep / SEARCH_LOG, "a") as log:
            done = subprocess.run(command, cwd=CHECKOUT, env=env, stdout=log, stderr=subprocess.STDOUT)
        print(f"== done: {task} {method} (exit {done.returncode})", flush=True)
    if done.returncode != 0:
        where = "see above" if jobs == 1 else f"see {sweep / SEARCH_LOG}"
        return SearchOutcome(task, method, done.returncode, f"failed (exit {done.returncode}), {where}")
    kept = results / task / method
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        shutil.copy2(sweep / name, kept / name)
    # a failed trial does not count towards n_trials; the sweep's end listed it as a warning
    failed = [run.path.name for run in failed_jobs(find_runs([sweep]))]
    note = f" (failed, not counted: trial {', '.join(failed)}; see its {FAILED})" if failed else ""
    return SearchOutcome(task, method, 0, _best(sweep) + note)


def run_searches(
    grid: list[tuple[str, str]], overrides: list[str], sweeps: Path, results: Path, jobs: int
) -> list[SearchOutcome]:
    """Every (task, method) search of ``grid``, ``jobs`` at a time, in its order. After a search
    fails for bad input (exit 2), no new one starts: the same overrides would fail all of them."""
    stop = threading.Event()

    def one(task: str, method: str) -> SearchOutcome | None:
        if stop.is_set():
            return None
        outcome = run_search(task, method, overrides, sweeps, results, jobs)
        if outcome.returncode == BAD_INPUT:
            stop.set()
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, task, method) for task, method in grid]
        return [outcome for future in futures if (outcome := future.result()) is not None]


def _table(outcomes: list[SearchOutcome]) -> str:
    rows = [f"{o.task:<6} {o.method:<10} {o.best}" for o in outcomes]
    return "\n".join([f"{'task':<6} {'method':<10} best", *rows])


def _parser() -> argparse.ArgumentParser:
    tasks, methods = comparison_grid()
    parser = argparse.ArgumentParser(
        prog="glue-lora method-search",
        description="The fair method comparison's searches (experiment=method_search for every method "
        "of experiment=method_comparison), resumable; then the three-seed cells: "
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
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="searches at once, each with an equal share of the CPU cores as threads (OMP_NUM_THREADS, "
        "unless set) and its output in its sweep dir's method_search.log; on a 2-core CPU, 2 trained "
        "about 1.07x more samples per second in all than 1 (docs/search.md)",
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
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: give 1 or more searches to run at once.", file=sys.stderr)
        return BAD_INPUT
    # method by method, so a stopped run leaves whole methods
    grid = [(task, method) for method in args.methods for task in args.tasks]
    outcomes = run_searches(grid, args.overrides, args.sweeps.resolve(), args.results.resolve(), args.jobs)
    if any(o.returncode == BAD_INPUT for o in outcomes):
        print(_table(outcomes), file=sys.stderr)
        return BAD_INPUT
    failed = [o for o in outcomes if o.returncode != 0]
    print(_table(outcomes), file=sys.stderr if failed else sys.stdout)
    if failed:
        count = f"{len(failed)} of {len(outcomes)} search(es)"
        print(f"error: {count} failed; the same command resumes them.", file=sys.stderr)
        return 1
    return 0
