"""Reading GLUE / AG News splits, tokenizing them once (cached on disk), and batching them.

A split is read from a local directory in the standard ``download_glue_data.py`` layout, or from
the Hugging Face Hub when no directory is given. Every row is checked (column count, label in the
task's label set) so that a bad file stops the run before training with the file and line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from glue_lora.data.collate import PadCollator
from glue_lora.data.sampler import EpochBatchSampler, check_batching
from glue_lora.data.source import DATA_DIR_HINT, check_data_source, not_loaded_from_hub
from glue_lora.data.tasks import TaskSpec
from glue_lora.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Rows as read: texts (one or two), label id / score (None on unlabelled test splits), row index.
Rows = dict[str, list]

CACHE_FORMAT_VERSION = "1"


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


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest that changes whenever the tokenizer would produce different ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # Truncation/padding are per-call settings the backend remembers; they are not identity.
        state.pop("truncation", None)
        state.pop("padding", None)
        state = json.dumps(state, sort_keys=True)
    else:
        state = repr(tokenizer)
    inputs = ",".join(getattr(tokenizer, "model_input_names", []))
    return hashlib.sha256(f"{type(tokenizer).__name__}|{inputs}|{state}".encode()).hexdigest()[:16]


def _rows_fingerprint(rows: Rows) -> str:
    digest = hashlib.sha256()
    for texts, label in zip(rows["texts"], rows["label"], strict=True):
        digest.update(repr((texts, label)).encode())
    return digest.hexdigest()[:16]


class TokenizedSplit(Dataset):
    """Token ids of one split, held in memory as flat arrays with row offsets.

    ``columns`` maps names to a column per row: token-id lists (``input_ids``, ``attention_mask``,
    ...) or one value (``labels``, ``idx``), as Python lists or Arrow arrays. A row is handed out
    as array views, which the padding collator accepts. (Indexing a ``datasets`` column row by row
    costs an Arrow lookup each time, tens of milliseconds per batch; this costs microseconds.)
    """

    def __init__(self, columns: Mapping[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.sequences: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.values: dict[str, np.ndarray] = {}
        for name, column in columns.items():
            array = column if isinstance(column, pa.Array | pa.ChunkedArray) else pa.array(column)
            if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
                lengths = pc.list_value_length(array).to_numpy()
                offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
                np.cumsum(lengths, out=offsets[1:])
                # Token ids, masks and type ids all fit in int32: half the memory of int64.
                flat = pc.list_flatten(array).to_numpy().astype(np.int32)
                self.sequences[name] = (flat, offsets)
            else:
                self.values[name] = array.to_numpy(zero_copy_only=False)
        self.lengths: list[int] = np.diff(self.sequences["input_ids"][1]).tolist()

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            k: flat[offsets[i] : offsets[i + 1]] for k, (flat, offsets) in self.sequences.items()
        }
        row.update((k, v[i]) for k, v in self.values.items())
        return row

    @property
    def columns(self) -> dict[str, list]:
        """The split as Python lists, one entry per row (for inspection; slow on big splits)."""
        out: dict[str, list] = {
            k: [flat[a:b].tolist() for a, b in itertools.pairwise(offsets)]
            for k, (flat, offsets) in self.sequences.items()
        }
        out.update((k, v.tolist()) for k, v in self.values.items())
        return out


def tokenize_rows(
    rows: Rows, tokenizer: Any, max_length: int, cache_dir: str | Path | None
) -> TokenizedSplit:
    """Tokenize ``rows`` once; later runs with the same rows, tokenizer and length load the cache."""
    import datasets

    cache_path = None
    if cache_dir is not None:
        key = hashlib.sha256(
            f"{CACHE_FORMAT_VERSION}|{_rows_fingerprint(rows)}|{tokenizer_fingerprint(tokenizer)}"
            f"|{max_length}".encode()
        ).hexdigest()[:24]
        cache_path = Path(cache_dir) / f"tokens-{key}"
        if cache_path.is_dir():
            table = datasets.load_from_disk(str(cache_path)).with_format("arrow")[:]
            return TokenizedSplit({name: table.column(name) for name in table.column_names})

    text_columns = [list(col) for col in zip(*rows["texts"], strict=True)]
    columns: dict[str, list] = dict(tokenizer(*text_columns, truncation=True, max_length=max_length))
    columns["idx"] = rows["idx"]
    if all(label is not None for label in rows["label"]):
        columns["labels"] = rows["label"]
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_path.parent, prefix=f".{cache_path.name}."))
        datasets.Dataset.from_dict(columns).save_to_disk(str(tmp))
        try:
            os.replace(tmp, cache_path)
        except OSError:  # another process cached the same rows first
            shutil.rmtree(tmp, ignore_errors=True)
    return TokenizedSplit(columns)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose place inside an epoch is saved in Lightning checkpoints.

    Lightning stores ``state_dict()`` of a stateful train loader in every checkpoint and calls
    ``load_state_dict`` on resume, so a run killed mid-epoch goes on with the first batch it had not
    trained on, instead of repeating the epoch's first batches. Lightning fetches exactly the
    batches it trains on from a loader with a length, so the batches handed out are the position.
    """

    def __iter__(self):  # a generator, so nothing is drawn before Lightning's set_epoch
        sampler = self.batch_sampler
        self._position = (sampler.epoch, sampler.pending_skip())
        for batch in super().__iter__():
            self._position = (self._position[0], self._position[1] + 1)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = getattr(self, "_position", (self.batch_sampler.epoch, 0))
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.skip_batches(int(state["epoch"]), int(state["batches"]))


class GlueDataModule(L.LightningDataModule):
    """Train/dev/test splits of one task, tokenized once, batched by length with dynamic padding
    (or, with ``sampler="random"`` and ``padding="max_length"``, as the reference batches them)."""

    def __init__(
        self,
        spec: TaskSpec,
        tokenizer: Any,
        *,
        data_dir: str | None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        val_fraction: float = 0.05,
        max_train_rows: int | None = None,
        max_eval_rows: int | None = None,
        skip_malformed_rows: bool = False,
        sampler: str = "length_grouped",
        padding: str = "longest",
        pad_to_multiple_of: int | None = None,
        dev_from_train: bool = False,
    ) -> None:
        super().__init__()
        check_batching(sampler, padding)
        if dev_from_train and tuple(spec.eval_splits) != ("dev",):
            raise ConfigError(
                f"data.dev_from_train=true is not available for {spec.name}: it has several dev splits "
                f"({', '.join(spec.eval_splits)}) and only one can be carved from train. "
                "Use data.dev_from_train=false."
            )
        self.spec = spec
        self.tokenizer = tokenizer
        self.data_dir = data_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.val_fraction = val_fraction
        self.max_train_rows = max_train_rows
        self.max_eval_rows = max_eval_rows
        self.skip_malformed_rows = skip_malformed_rows
        self.group_by_length = sampler == "length_grouped"
        self.pad_to_max_length = padding == "max_length"
        self.pad_to_multiple_of = pad_to_multiple_of
        self.dev_from_train = dev_from_train
        self.splits: dict[str, TokenizedSplit] = {}

    def read(self, split: str) -> Rows:
        return read_split(self.spec, self.data_dir, split, skip_malformed=self.skip_malformed_rows)

    def _dev_from_file(self) -> bool:
        has_dev = "dev" in self.spec.splits or (self.data_dir is None and "dev" in self.spec.hub_splits)
        return has_dev and not self.dev_from_train

    def read_all(self) -> dict[str, Rows]:
        """Read train and the dev split(s); dev is carved from train when the task has no dev file
        or ``dev_from_train`` asks for it (a search that must not tune on the reported dev)."""
        rows = {"train": self.read("train")}
        if self._dev_from_file():
            for split in self.spec.eval_splits:
                rows[split] = self.read(split)
        else:
            # The held-out rows must not depend on the run's seed, or dev scores of seeds differ.
            rows["train"], rows["dev"] = carve_dev(rows["train"], self.val_fraction, seed=0)
        rows["train"] = subset(rows["train"], self.max_train_rows)
        for split in self.spec.eval_splits:
            rows[split] = subset(rows[split], self.max_eval_rows)
        return rows

    def read_eval(self) -> dict[str, Rows]:
        """The dev split(s) alone, exactly as ``read_all`` gives them (eval.py reads no train file)."""
        if self._dev_from_file():
            rows = {split: self.read(split) for split in self.spec.eval_splits}
        else:
            rows = {"dev": carve_dev(self.read("train"), self.val_fraction, seed=0)[1]}
        return {split: subset(r, self.max_eval_rows) for split, r in rows.items()}

    def read_test(self) -> dict[str, Rows]:
        """The test split(s) predicted for the leaderboard (MNLI: matched and mismatched), in full."""
        return {split: self.read(split) for split in self.spec.leaderboard_files}

    def stage_splits(self, stage: str | None) -> tuple[str, ...]:
        if stage == "validate":
            return self.spec.eval_splits
        if stage in ("test", "predict"):
            return tuple(self.spec.leaderboard_files)
        return ("train", *self.spec.eval_splits)

    def setup(self, stage: str | None = None) -> None:
        if all(split in self.splits for split in self.stage_splits(stage)):
            return
        read = {"validate": self.read_eval, "test": self.read_test, "predict": self.read_test}
        for split, rows in read.get(stage or "fit", self.read_all)().items():
            self.splits[split] = tokenize_rows(rows, self.tokenizer, self.max_length, self.cache_dir)
            log.info("%s %s: %d rows", self.spec.name, split, len(self.splits[split]))

    def _collate(self) -> PadCollator:
        width = self.max_length if self.pad_to_max_length else None
        return PadCollator.from_tokenizer(
            self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of, pad_to_length=width
        )

    def _loader(self, split: TokenizedSplit, batch_size: int, shuffle: bool) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = EpochBatchSampler(
            split.lengths,
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            group_by_length=self.group_by_length,
            num_replicas=replicas,
            rank=rank,
        )
        # Training batches are resumable mid-epoch; a loader's own generator keeps the global
        # random stream (dropout) the same whether or not a run was resumed.
        loader = ResumableDataLoader if shuffle else DataLoader
        return loader(
            split,
            batch_sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self._collate(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits["train"], self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            self._loader(self.splits[s], self.eval_batch_size, shuffle=False) for s in self.spec.eval_splits
        ]

    def predict_dataloader(self) -> list[DataLoader]:
        """The test split(s), in the order of ``spec.leaderboard_files``."""
        return [
            self._loader(self.splits[s], self.eval_batch_size, shuffle=False)
            for s in self.spec.leaderboard_files
        ]
