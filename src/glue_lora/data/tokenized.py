"""Tokenizing rows once, cached on disk, into a split held in memory as flat token-id arrays."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from glue_lora.data.reading import Rows
from glue_lora.utils.errors import ConfigError

log = logging.getLogger(__name__)

# 2: one Arrow IPC file per split, written atomically (1: a ``datasets`` directory)
CACHE_FORMAT_VERSION = "2"


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


def tokenize_rows(
    rows: Rows, tokenizer: Any, max_length: int, cache_dir: str | Path | None
) -> TokenizedSplit:
    """Tokenize ``rows`` once; later runs with the same rows, tokenizer and length load the cache."""
    cache_path = None
    if cache_dir is not None:
        _check_cache_dir(Path(cache_dir))
        key = hashlib.sha256(
            f"{CACHE_FORMAT_VERSION}|{_rows_fingerprint(rows)}|{tokenizer_fingerprint(tokenizer)}"
            f"|{max_length}".encode()
        ).hexdigest()[:24]
        cache_path = Path(cache_dir) / f"tokens-{key}.arrow"
        if cache_path.is_file() and (cached := _read_cache(cache_path, len(rows["texts"]))) is not None:
            return TokenizedSplit(cached)

    text_columns = [list(col) for col in zip(*rows["texts"], strict=True)]
    columns: dict[str, list] = dict(tokenizer(*text_columns, truncation=True, max_length=max_length))
    columns["idx"] = rows["idx"]
    if all(label is not None for label in rows["label"]):
        columns["labels"] = rows["label"]
    if cache_path is not None:
        _write_cache(cache_path, columns)
    return TokenizedSplit(columns)


def _check_cache_dir(cache_dir: Path) -> None:
    existing = next((p for p in (cache_dir, *cache_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(
            f"The token cache directory {cache_dir} cannot be made: {existing} is a file. Point "
            "data.cache_dir (or the GLUE_LORA_CACHE environment variable) at a directory, or set "
            "data.cache_dir=null for no cache."
        )


def _read_cache(path: Path, n_rows: int) -> dict[str, Any] | None:
    """The cached columns, or None (said in one line) when the file is damaged: it is then rebuilt."""
    import pyarrow as pa

    try:
        with pa.OSFile(str(path), "rb") as source:
            table = pa.ipc.open_file(source).read_all()
        if table.num_rows != n_rows or "input_ids" not in table.column_names:
            raise ValueError(f"{table.num_rows} rows and columns {table.column_names}, for {n_rows} rows")
    except (pa.ArrowException, OSError, ValueError) as err:
        log.warning("The tokenized cache %s is damaged (%s); rebuilding it.", path, str(err).splitlines()[0])
        return None
    return {name: table.column(name) for name in table.column_names}


def _write_cache(path: Path, columns: dict[str, list]) -> None:
    """Write the cache beside its final name and rename it into place, so that no reader ever sees
    a partial file; two jobs tokenizing the same rows at once each rename a whole file of the same
    content. A failed write (a full disk) costs only the cache."""
    import pyarrow as pa

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # a read-only or full file system
        log.warning("Could not write the tokenized cache %s (%s); the run goes on without it.", path, err)
        return
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        table = pa.table({name: pa.array(values) for name, values in columns.items()})
        with pa.OSFile(tmp_name, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("Could not write the tokenized cache %s (%s); the run goes on without it.", path, err)
    finally:
        tmp.unlink(missing_ok=True)
