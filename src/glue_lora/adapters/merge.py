"""`glue-lora merge <adapter> <out_dir>`: fold an adapter into its base, save a plain transformers model.

The result loads with ``AutoModelForSequenceClassification.from_pretrained(out_dir)`` (no peft, no
glue-lora) and predicts what the adapter predicts; the trained head replaces the base's. eval.py also
accepts the merged directory. What each method folds in:

- LoRA family (LoRA, rsLoRA, DoRA, PiSSA, OLoRA, LoRA+, LoRA-FA) and AdaLoRA: W' = W + s B A (DoRA:
  rescaled to its trained magnitude; PiSSA and OLoRA: W is the residual their start left);
- VeRA: W' = W + diag(b) B diag(d) A with the shared projections; (IA)^3: each scaling vector
  multiplied into its weight; FourierFT: the inverse Fourier transform of its spectrum added to W;
- BitFit and head only: the saved tensors are put into the base, which is saved whole.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from glue_lora.adapters.loading import load_model
from glue_lora.adapters.model_card import CARD, hub_base, merged_card
from glue_lora.adapters.record import RECORD, AdapterInfo
from glue_lora.settings.method import FULL
from glue_lora.utils.artifacts import atomic_save_pretrained, atomic_write_json
from glue_lora.utils.errors import ConfigError, GlueLoraError
from glue_lora.utils.shareable import shareable, shareable_path
from glue_lora.utils.timing import median_forward_seconds

log = logging.getLogger(__name__)


def _check_free(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            f"{out_dir} already exists and is not empty; it is left untouched. Give a new directory "
            "(or delete that one first)."
        )


def merge(model: Any, info: AdapterInfo) -> Any:
    """The plain transformers model of a loaded adapter, with it merged and label names set."""
    if info.method.is_full:
        raise ConfigError(
            f"{info.path} is already a full model (trained without an adapter, or merged): there is "
            "nothing to merge. Load it with AutoModelForSequenceClassification.from_pretrained as it is."
        )
    merged = model if info.method.trains != "adapter" else _merge_peft(model, info)
    if info.label_names:
        merged.config.id2label = dict(enumerate(info.label_names))
        merged.config.label2id = {name: i for i, name in enumerate(info.label_names)}
    return merged.eval()


def _unwrap_heads(model: Any) -> None:
    """Put each head's trained copy in place of peft's ``ModulesToSaveWrapper`` around it.

    peft's generic unloading (VeRA, (IA)^3, FourierFT; LoRA has its own) copies ``weight`` from the
    module it unwraps, which a classification head made of several layers does not have.
    """
    from peft.utils import ModulesToSaveWrapper

    inner = model.get_base_model()
    wrapped = [(name, m) for name, m in inner.named_modules() if isinstance(m, ModulesToSaveWrapper)]
    for name, wrapper in wrapped:
        inner.set_submodule(name, wrapper.modules_to_save[wrapper.active_adapters[0]])


def _merge_peft(model: Any, info: AdapterInfo) -> Any:
    try:
        _unwrap_heads(model)
        return model.merge_and_unload()
    except (AttributeError, NotImplementedError, TypeError, ValueError) as err:
        raise ConfigError(
            f"The {info.method.name} adapter at {info.path} cannot be merged into its base ({err}). "
            "Serve it unmerged: load_model() or eval.py load it with peft as it is."
        ) from None


def merge_adapter(adapter: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Merge the adapter at ``adapter`` (run or adapter directory) and save it with its tokenizer."""
    import json

    out_dir = Path(out_dir)
    _check_free(out_dir)
    model, tokenizer, info = load_model(adapter, base=base)
    merged = merge(model, info)
    record = {
        # shareable: a record written before records left machine paths out may still hold some
        **shareable(json.loads((info.path / RECORD).read_text())),
        "method": FULL.as_dict(),
        "lora": None,
        "merged_from": shareable_path(info.path),
        "merged_method": info.method.as_dict(),
    }
    card = info.path / CARD
    card_text = merged_card(
        card.read_text(encoding="utf-8") if card.is_file() else None,
        info.task,
        hub_base(info.model),
        shareable_path(info.path),
    )

    def write(path: str | Path) -> None:
        merged.save_pretrained(path)  # safetensors
        tokenizer.save_pretrained(path)
        atomic_write_json(Path(path) / RECORD, record)
        (Path(path) / CARD).write_text(card_text, encoding="utf-8")

    # Written into a temporary directory and renamed: a crash leaves no half model.
    atomic_save_pretrained(SimpleNamespace(save_pretrained=write), out_dir)
    log.info("Merged %s into %s", info.path, out_dir)
    return out_dir


def compare_speed(
    unmerged: torch.nn.Module,
    merged: torch.nn.Module,
    batch_size: int = 32,
    seq_len: int = 128,
    steps: int = 20,
) -> dict[str, float]:
    """Inference throughput of the adapter as trained (LoRA beside W) and merged (one W), same inputs."""
    device = next(merged.parameters()).device
    vocab = merged.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch_size, seq_len), generator=generator).to(device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    seconds = {
        name: median_forward_seconds(m, inputs, steps)
        for name, m in (("unmerged", unmerged), ("merged", merged))
    }
    return {
        "batch_size": batch_size,
        "seq_len": seq_len,
        "unmerged_ms": round(seconds["unmerged"] * 1e3, 3),
        "merged_ms": round(seconds["merged"] * 1e3, 3),
        "unmerged_samples_per_s": round(batch_size / seconds["unmerged"], 1),
        "merged_samples_per_s": round(batch_size / seconds["merged"], 1),
        "speedup": round(seconds["unmerged"] / seconds["merged"], 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glue-lora merge",
        description="Merge an adapter into its base model and save a plain transformers model.",
    )
    parser.add_argument("adapter", help="a training run directory (holding adapter/) or an adapter directory")
    parser.add_argument("out_dir", help="a new directory for the merged model and its tokenizer")
    parser.add_argument(
        "--base", help="a local directory or Hub id of the base weights (default: as recorded)"
    )
    parser.add_argument(
        "--compare-speed", action="store_true", help="also time inference of merged vs unmerged"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (for --compare-speed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out_dir = merge_adapter(args.adapter, args.out_dir, base=args.base)
        print(f"merged model in {out_dir}")
        if args.compare_speed:
            from transformers import AutoModelForSequenceClassification

            unmerged, _, _ = load_model(args.adapter, base=args.base, device=args.device)
            merged = AutoModelForSequenceClassification.from_pretrained(out_dir).eval().to(args.device)
            print(compare_speed(unmerged, merged, args.batch_size, args.seq_len))
    except GlueLoraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
