"""`glue-lora report <dir> [<dir> ...]`: the sweep summary for any set of run or sweep directories,
and PNG plots (``reports.plots``): dev metric per epoch, final score against trainable parameters,
and the variants side by side.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from glue_lora.reports.plots import (
    COMPARISON_PNG,
    CURVES_PNG,
    PARAMS_PNG,
    plot_comparison,
    plot_curves,
    plot_params,
)
from glue_lora.reports.provenance import cell_differences
from glue_lora.reports.summary import SUMMARY_CSV, SUMMARY_MD, Configuration, summarise
from glue_lora.utils.shareable import shareable_path


def report(dirs: Sequence[str | Path], out_dir: str | Path) -> tuple[list[Configuration], list[Path]]:
    """Write summary.csv, summary.md and the plots for the runs under ``dirs`` into ``out_dir``."""
    out_dir = Path(out_dir)
    title = "Summary of " + ", ".join(shareable_path(d) for d in dirs)
    configs = summarise(dirs, out_dir, title=title)
    written = [out_dir / SUMMARY_CSV, out_dir / SUMMARY_MD]
    plots = ((plot_curves, CURVES_PNG), (plot_params, PARAMS_PNG), (plot_comparison, COMPARISON_PNG))
    for plot, name in plots:
        path = plot(configs, out_dir / name)
        if path is not None:
            written.append(path)
    return configs, written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glue-lora report",
        description="Summarise run and sweep directories against the paper (summary.csv, summary.md) "
        "and plot dev metrics per epoch and score against trainable parameters (PNG).",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories (searched recursively)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the files (default: the directory given, or ./report for several)",
    )
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        print(
            f"error: not a directory: {', '.join(missing)}. Pass run or sweep directories.", file=sys.stderr
        )
        return 2
    out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path("report"))
    configs, written = report(args.dirs, out)
    if not configs:
        print(
            f"error: no runs (results.json, failed.json or .hydra/config.yaml) under "
            f"{', '.join(map(str, args.dirs))}. Pass the directories train.py wrote (outputs/... or "
            "multirun/...).",
            file=sys.stderr,
        )
        return 2
    print((out / SUMMARY_MD).read_text())
    for difference in cell_differences(configs):
        print(f"warning: {difference}: they are not repeats of one experiment.", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
