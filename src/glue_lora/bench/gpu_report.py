"""One section of bench/gpu.sh at a time: reads the runs it made, writes ``<nn>-<name>.json`` and ``.md``.

Each section is summarised as soon as it finishes, so a script cut short still leaves what it
measured; ``gather`` joins the sections' markdown into ``gpu.md``. A run that is missing (cut by
its section's time cap) or failed is reported as such, never as a figure. Only ``environment``
imports torch; the others read JSON, CSV and safetensors headers and start in well under a second.

    python -m glue_lora.bench.gpu_report precision OUT --runs 32-true=DIR 16-mixed=DIR ...
    python -m glue_lora.bench.gpu_report determinism OUT --runs a=DIR b=DIR
    python -m glue_lora.bench.gpu_report throughput OUT --runs roberta-base-sst2=bench.json ...
    python -m glue_lora.bench.gpu_report gather OUT
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from glue_lora.bench.gpu_runs import read_json
from glue_lora.bench.gpu_sections import (
    SECTIONS,
    deberta_section,
    determinism_section,
    environment_section,
    precision_section,
    qlora_section,
    throughput_section,
)


def with_timing(section: dict[str, Any], seconds: float | None, cap: float | None) -> dict[str, Any]:
    """Records how long the section ran against its cap, in the JSON and under the title."""
    if seconds is None:
        return section
    section.update(seconds=seconds, cap_seconds=cap)
    took = f" Took {seconds:.0f} s" + (f" of its {cap:.0f} s cap" if cap else "") + "."
    md = section["markdown"]
    first_stop = md.index(".\n", md.index("Status: ")) + 1
    section["markdown"] = md[:first_stop] + took + md[first_stop:]
    return section


def write_section(out: Path, section: dict[str, Any]) -> Path:
    stem = SECTIONS[section["section"]][0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(section, indent=2, default=str))
    (out / f"{stem}.md").write_text(section["markdown"])
    return out / f"{stem}.md"


def gather(out: Path) -> Path:
    """gpu.md: every section's markdown in order, a section never written marked as such."""
    out = Path(out)
    env = read_json(out / f"{SECTIONS['environment'][0]}.json") or {}
    info = env.get("results", {})
    head = f"# GPU checks: {info.get('device', 'unknown device')}, {info.get('date', 'unknown date')}"
    if info.get("dry_run"):
        head += " (DRY RUN: tiny sizes on a CPU, the figures mean nothing)"
    parts = [head, ""]
    for stem, title in SECTIONS.values():
        md = out / f"{stem}.md"
        parts.append(
            md.read_text() if md.is_file() else f"## {title}\n\nNot run (cut by the time caps or failed).\n"
        )
    (out / "gpu.md").write_text("\n".join(parts))
    return out / "gpu.md"


def _pairs(values: list[str]) -> dict[str, Path]:
    pairs = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"--runs takes LABEL=PATH pairs, got {value!r}")
        pairs[label] = Path(path)
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glue_lora.bench.gpu_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=[*SECTIONS, "gather"])
    parser.add_argument("out", type=Path, help="the script's output folder")
    parser.add_argument("--runs", nargs="*", default=[], help="LABEL=PATH: run dirs or bench JSON files")
    parser.add_argument("--reference", default="32-true", help="precision: the run the others match")
    parser.add_argument("--tolerance", type=float, default=0.02, help="precision: |Δ dev score| allowed")
    parser.add_argument("--skipped", help="qlora: why the section did not run")
    parser.add_argument("--dry-run", action="store_true", help="environment: mark the report as a dry run")
    parser.add_argument("--seconds", type=float, help="how long the section ran")
    parser.add_argument("--cap", type=float, help="the section's time cap in seconds")
    args = parser.parse_args(argv)
    runs = _pairs(args.runs)
    if args.kind == "gather":
        path = gather(args.out)
    else:
        section = {
            "environment": lambda: environment_section(args.dry_run),
            "precision": lambda: precision_section(runs, args.reference, args.tolerance),
            "determinism": lambda: determinism_section(runs),
            "throughput": lambda: throughput_section(runs),
            "deberta": lambda: deberta_section(runs),
            "qlora": lambda: qlora_section(runs, args.skipped),
        }[args.kind]()
        section = with_timing(section, args.seconds, args.cap)
        path = write_section(args.out, section)
    print(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
