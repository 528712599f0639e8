"""Secrets (API keys, tokens, passwords) kept out of saved configs, checkpoints and logs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# A config key whose last component ends in one of these words holds a secret (hf_token, api_key,
# wandb_api_key); pad_token_id or tokenizer do not.
SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password|passwd|credentials?|auth)$", re.IGNORECASE)
REDACTED = "***"


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(str(key).rsplit(".", 1)[-1]))


def redact(value: Any) -> Any:
    """A copy of a plain config (dicts, lists, scalars) with the values of secret keys masked."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def secret_overrides(overrides: Iterable[str]) -> list[str]:
    """The command-line overrides that put a literal secret into the config (Hydra saves them)."""
    found = []
    for override in overrides:
        key, sep, value = str(override).partition("=")
        if sep and is_secret_key(key.lstrip("+~")) and value and not value.startswith("${"):
            found.append(key.lstrip("+~"))
    return found
