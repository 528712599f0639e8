"""Small data files in each task's real layout (header, columns, quoting, label spelling)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

WORDS = "good bad great awful fine poor nice dull bright dark happy sad film story plot actor".split()

# (columns of train/dev files, columns of test files) per GLUE directory; None: no header line.
LAYOUTS: dict[str, tuple[list[str] | None, list[str]]] = {
    "SST-2": (["sentence", "label"], ["index", "sentence"]),
    "CoLA": (None, ["index", "sentence"]),
    "MRPC": (
        ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    ),
    "QQP": (
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["id", "question1", "question2"],
    ),
    "STS-B": (
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"],
    ),
    "MNLI": (
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ],
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
        ],
    ),
    "QNLI": (["index", "question", "sentence", "label"], ["index", "question", "sentence"]),
    "RTE": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
    "WNLI": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
}

LABELS = {
    "SST-2": ["0", "1"],
    "CoLA": ["0", "1"],
    "MRPC": ["0", "1"],
    "QQP": ["0", "1"],
    "WNLI": ["0", "1"],
    "MNLI": ["entailment", "neutral", "contradiction"],
    "QNLI": ["entailment", "not_entailment"],
    "RTE": ["entailment", "not_entailment"],
}

SPLIT_FILES = {
    "MNLI": {
        "train": "train.tsv",
        "dev": "dev_matched.tsv",
        "dev_mm": "dev_mismatched.tsv",
        "test": "test_matched.tsv",
        "test_mm": "test_mismatched.tsv",
    }
}


def _sentence(rng: random.Random) -> str:
    # A stray double quote, as in the real GLUE files, must be read as text (quoting off).
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
    if rng.random() < 0.2:
        words.insert(1, '"')
    return " ".join(words)


def _row(directory: str, columns: list[str], i: int, rng: random.Random, labelled: bool) -> list[str]:
    label = rng.choice(LABELS.get(directory, ["0"])) if directory != "STS-B" else f"{rng.uniform(0, 5):.3f}"
    values = []
    for c in columns:
        name = c.lstrip("\ufeff")
        if name in ("label", "gold_label", "Quality", "is_duplicate", "score", "label1"):
            values.append(label)
        elif name in ("index", "id", "#1 ID", "#2 ID", "qid1", "qid2", "promptID", "pairID", "old_index"):
            values.append(str(i))
        elif "parse" in name or name in ("genre", "filename", "year", "source1", "source2"):
            values.append("x")
        else:
            values.append(_sentence(rng))
    return values


def write_glue_task(root: Path, directory: str, rows: int = 48, seed: int = 0) -> Path:
    """Write train/dev/test files of GLUE task ``directory`` under ``root/directory``."""
    rng = random.Random(seed)
    task_dir = root / directory
    task_dir.mkdir(parents=True, exist_ok=True)
    labelled_cols, test_cols = LAYOUTS[directory]
    files = SPLIT_FILES.get(directory, {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"})
    for split, name in files.items():
        lines = []
        if split.startswith("test"):
            lines.append("\t".join(test_cols))
            lines += ["\t".join(_row(directory, test_cols, i, rng, False)) for i in range(rows // 2)]
        elif labelled_cols is None:  # CoLA: source, label, original mark, sentence; no header
            lines += [f"src\t{rng.choice(['0', '1'])}\t\t{_sentence(rng)}" for _ in range(rows)]
        else:
            lines.append("\t".join(labelled_cols))
            lines += ["\t".join(_row(directory, labelled_cols, i, rng, True)) for i in range(rows)]
        (task_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return task_dir


def write_ag_news(root: Path, rows: int = 48, seed: int = 0) -> Path:
    """AG News CSVs: no header; class index 1-4, title, description (quoted CSV)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.csv", rows), ("test.csv", rows // 2)):
        with (root / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
            for _ in range(n):
                writer.writerow([str(rng.randint(1, 4)), _sentence(rng), _sentence(rng) + ", with a comma"])
    return root


def write_all(root: Path, rows: int = 48) -> Path:
    for directory in LAYOUTS:
        write_glue_task(root, directory, rows)
    write_ag_news(root / "ag_news", rows)
    return root
