"""`glue-lora push <run dir> <repo id>`: upload an adapter (or merged model) with its card to the Hub.

The directory is uploaded as it is (weights, adapter_config.json, glue_lora.json, README.md) through
``huggingface_hub.HfApi``; the token is huggingface_hub's own (`hf auth login` or ``HF_TOKEN``),
never a command-line argument.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glue_lora.adapters.model_card import CARD
from glue_lora.adapters.record import RECORD, resolve_adapter_dir
from glue_lora.utils.errors import ConfigError, GlueLoraError, PushError


def push(path: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload the adapter directory of ``path``; returns the commit URL."""
    from huggingface_hub import HfApi

    adapter_dir = resolve_adapter_dir(path)
    if not (adapter_dir / CARD).is_file():
        raise ConfigError(
            f"{adapter_dir} has no {CARD} (model card), so its Hub page would be empty. Copy it from "
            "the run's adapter/ directory (train.py writes it), or write a README.md with YAML front "
            "matter (base_model, library_name, metrics) into it, then push."
        )
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(adapter_dir),
            repo_id=repo_id,
            repo_type="model",
            revision=revision,
            commit_message=f"glue-lora: upload {adapter_dir.name}/ ({RECORD}, weights, model card)",
            ignore_patterns=[".*"],
        )
    except Exception as err:  # HTTP errors, no network, no login: all mean the same to the user
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise PushError(
            f"Could not push {adapter_dir} to the Hub repository {repo_id} ({type(err).__name__}: {first}). "
            "Log in with `hf auth login` (or set HF_TOKEN) with a token that may write to it, check the "
            "repository id (<user or organisation>/<name>) and the network, then push again."
        ) from None
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glue-lora push",
        description="Upload an adapter (or a merged model) with its model card to the Hugging Face Hub.",
    )
    parser.add_argument("path", help="a training run directory (holding adapter/), an adapter or merged dir")
    parser.add_argument("repo_id", help="the Hub repository, <user or organisation>/<name>")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="the branch to push to (default: main)")
    args = parser.parse_args(argv)
    try:
        url = push(args.path, args.repo_id, private=args.private, revision=args.revision)
    except GlueLoraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"pushed {args.path} to {args.repo_id}: {url}")
    return 0
