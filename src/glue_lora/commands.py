"""`glue-lora <command> ...`: the commands besides train.py and eval.py.

Each command lives in its own module with a ``main(argv: list[str]) -> int`` function; this table
maps command names to those modules so that `glue-lora --help` imports nothing heavy.
"""

from __future__ import annotations

import importlib
import sys

# command name -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "study": (
        "glue_lora.reports.study",
        "LoRA vs full fine-tuning: wall time, optimizer state, dev per epoch",
    ),
    "report": ("glue_lora.reports.report", "summarise run/sweep directories against the paper, with plots"),
    "merge": (
        "glue_lora.adapters.merge",
        "merge a LoRA adapter into its base model (plain transformers model)",
    ),
    "import-loralib": (
        "glue_lora.adapters.import_loralib",
        "convert a microsoft/LoRA checkpoint into an adapter",
    ),
    "bench": ("glue_lora.bench.command", "training speed and memory vs transformers Trainer + PEFT"),
    "bench-methods": ("glue_lora.bench.methods", "training step time of each PEFT method vs plain LoRA"),
    "method-search": (
        "glue_lora.search.comparison",
        "the fair method comparison's searches: every method, the same search, resumable",
    ),
    "push": ("glue_lora.adapters.push", "upload an adapter (or merged model) with its model card to the Hub"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max((len(c) for c in COMMANDS), default=8)
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(COMMANDS.items())]
        print("usage: glue-lora <command> [args]\n\ncommands:\n" + "\n".join(lines), file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    from glue_lora.utils.quiet import silence_known_warnings

    silence_known_warnings()
    module_name, _ = COMMANDS[argv[0]]
    return int(importlib.import_module(module_name).main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
