"""Reading GLUE / AG News splits into rows: from files in the GLUE layout, or from the Hub.

A split is read from a local directory in the standard ``download_glue_data.py`` layout, or from
the Hugging Face Hub when no directory is given. Every row is checked (column count, label in the
task's label set) so that a bad file stops the run before training with the file and line.
"""

from __future__ import annotations

import codecs
import csv
import logging
import math
import random
from pathlib import Path
from typing import Any

from glue_lora.data.source import DATA_DIR_HINT, check_data_source, not_loaded_from_hub
from glue_lora.data.tasks import TaskSpec
from glue_lora.utils.errors import DataError

log = logging.getLogger(__name__)

# Rows as read: texts (one or two), label id / score (None on unlabelled test splits), row index.
Rows = dict[str, list]


def _parse_label(spec: TaskSpec, raw: str, where: str) -> int | float:
    raw = raw.strip()
    if spec.label_names is None:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(
                f"{where}: the {spec.name} score {raw!r} is not a finite number. Fix or remove "
                "the row (STS-B scores are numbers between 0 and 5)."
            )
        return value
    try:
        return spec.label_names.index(raw)
    except ValueError:
        raise DataError(
            f"{where}: label {raw!r} is not one of the {spec.name} labels "
            f"{list(spec.label_names)}. Fix or remove the row, or check that task={spec.name} "
            "matches the file."
        ) from None


class Utf8Lines:
    """The lines of a binary file decoded as UTF-8 (a leading BOM dropped), for ``csv.reader``.

    A line with bytes that are not UTF-8 is decoded with ``surrogateescape`` instead of failing
    mid-file; ``bad`` then holds the physical line number and file byte offset of the first such
    byte since the last ``reset()``, so the reader can name it or skip the row.
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.line_number = 0
        self.offset = 0
        self.bad: tuple[int, int, int] | None = None  # (line, byte offset, byte value)

    def __iter__(self) -> Utf8Lines:
        return self

    def __next__(self) -> str:
        raw = self.handle.readline()
        if not raw:
            raise StopIteration
        start, self.offset = self.offset, self.offset + len(raw)
        self.line_number += 1
        if self.line_number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, start = raw[len(codecs.BOM_UTF8) :], start + len(codecs.BOM_UTF8)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if self.bad is None:
                self.bad = (self.line_number, start + err.start, raw[err.start])
            return raw.decode("utf-8", errors="surrogateescape")

    def reset(self) -> None:
        self.bad = None


def _open_rows(spec: TaskSpec, path: Path):
    handle = path.open("rb")
    lines = Utf8Lines(handle)
    if spec.file_format == "csv":
        return handle, lines, csv.reader(lines)
    # GLUE TSVs contain stray quote characters that are part of the text: quoting must be off.
    return handle, lines, csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)


def _not_utf8(path: Path, bad: tuple[int, int, int]) -> DataError:
    line, offset, byte = bad
    return DataError(
        f"{path}, line {line}: byte 0x{byte:02x} at byte offset {offset} is not UTF-8. Re-save the file "
        "as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or set data.skip_malformed_rows=true to skip "
        "such rows (each skip is counted in the log)."
    )


def read_split_file(
    spec: TaskSpec, path: Path, *, skip_malformed: bool = False, header: bool | None = None
) -> Rows:
    """Read one split file of ``spec`` into columns ``texts``, ``label`` and ``idx``.

    ``header``: whether the file starts with a header line (default: unless the task's files have none).
    """
    if not path.is_file():
        raise DataError(f"Missing data file {path} for task {spec.name}. {DATA_DIR_HINT}")
    if header is None:
        header = spec.headerless_columns is None
    handle, lines, reader = _open_rows(spec, path)
    with handle:
        if not header:
            columns = list(spec.headerless_columns)
            first_line = 1
        else:
            try:
                columns = [c.strip() for c in next(reader)]
            except StopIteration:
                columns = []
            if lines.bad is not None:
                raise _not_utf8(path, lines.bad)
            first_line = 2
        missing = [c for c in spec.text_columns if c not in columns]
        if missing:
            raise DataError(
                f"{path}: header {columns} lacks the column(s) {missing} that task {spec.name} "
                f"reads. Check that the file belongs to task={spec.name} and is in the GLUE layout."
            )
        text_positions = [columns.index(c) for c in spec.text_columns]
        label_position = columns.index(spec.label_column) if spec.label_column in columns else None
        index_position = columns.index("index") if "index" in columns else None
        rows: Rows = {"texts": [], "label": [], "idx": []}
        skipped = 0
        for line_number, fields in enumerate(reader, start=first_line):
            bad = lines.bad
            lines.reset()
            if not fields:
                continue
            if bad is not None:
                if skip_malformed:
                    skipped += 1
                    continue
                raise _not_utf8(path, bad)
            where = f"{path}, line {line_number}"
            if len(fields) != len(columns):
                if skip_malformed:
                    skipped += 1
                    continue
                raise DataError(
                    f"{where}: expected {len(columns)} tab-separated fields {columns}, found "
                    f"{len(fields)}. Repair the row, or set data.skip_malformed_rows=true to skip "
                    "such rows (each skip is counted in the log)."
                )
            rows["texts"].append(tuple(fields[p] for p in text_positions))
            label = None if label_position is None else _parse_label(spec, fields[label_position], where)
            rows["label"].append(label)
            row_id = fields[index_position] if index_position is not None else len(rows["idx"])
            rows["idx"].append(int(row_id) if str(row_id).isdigit() else len(rows["idx"]))
    if skipped:
        log.warning("Skipped %d malformed row(s) (wrong field count, or not UTF-8) of %s", skipped, path)
    if not rows["texts"]:
        raise DataError(f"{path} holds no rows. Replace it with the task's {path.name} from the GLUE data.")
    return rows


def read_split_from_hub(spec: TaskSpec, split: str) -> Rows:
    """Read one split of ``spec`` from the Hugging Face Hub (``nyu-mll/glue`` or AG News)."""
    import datasets

    check_data_source(spec, None)
    try:
        dataset = datasets.load_dataset(spec.hub_path, spec.hub_name, split=spec.hub_splits[split])
    except Exception as err:  # the Hub client raises many types; all mean "not reachable here"
        raise not_loaded_from_hub(spec, split, err) from err
    text_columns = spec.hub_text_columns or spec.text_columns
    texts = list(zip(*(dataset[c] for c in text_columns), strict=True))
    labels = [None if lab is None or lab == -1 else lab for lab in dataset["label"]]
    idx = dataset["idx"] if "idx" in dataset.column_names else list(range(len(texts)))
    return {"texts": texts, "label": labels, "idx": list(idx)}


def read_split(
    spec: TaskSpec, data_dir: str | Path | None, split: str, *, skip_malformed: bool = False
) -> Rows:
    """Read ``split`` of ``spec`` from ``data_dir`` (GLUE layout) or from the Hub when it is None."""
    if data_dir is None:
        return read_split_from_hub(spec, split)
    check_data_source(spec, data_dir)
    task_dir = Path(data_dir) / spec.directory
    return read_split_file(
        spec, task_dir / spec.splits[split], skip_malformed=skip_malformed, header=spec.has_header(split)
    )


def subset(rows: Rows, max_rows: int | None, seed: int = 0) -> Rows:
    """A seeded random subset of at most ``max_rows`` rows, kept in file order."""
    n = len(rows["texts"])
    if max_rows is None or max_rows >= n:
        return rows
    keep = sorted(random.Random(seed).sample(range(n), max_rows))
    return {k: [v[i] for i in keep] for k, v in rows.items()}


def carve_dev(rows: Rows, fraction: float, seed: int) -> tuple[Rows, Rows]:
    """Split ``rows`` into (train, dev) with a seeded ``fraction`` held out for dev."""
    n = len(rows["texts"])
    n_dev = max(1, round(n * fraction))
    dev_ids = set(random.Random(seed).sample(range(n), n_dev))
    pick = lambda keep: {k: [v[i] for i in range(n) if (i in dev_ids) == keep] for k, v in rows.items()}  # noqa: E731
    return pick(False), pick(True)
