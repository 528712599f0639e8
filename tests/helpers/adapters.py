"""Adapters made without training: a tiny model whose LoRA and head get seeded random values."""

from __future__ import annotations

from pathlib import Path

import torch

from glue_lora.adapters.save import save_adapter
from glue_lora.data.tasks import get_task
from glue_lora.train import set_determinism
from tests.helpers.runs import compose_train, model_of, record_of


def make_adapter(
    out_dir: Path, task: str, model: str = "tiny_roberta", overrides: list[str] = (), seed: int = 0
) -> Path:
    """Save an adapter as train.py would (same base from the run's seed), with non-zero LoRA B.

    Returns the run directory (it holds adapter/).
    """
    cfg = compose_train([f"model={model}", f"task={task}", f"seed={seed}", *overrides], out_dir)
    spec = get_task(task)
    set_determinism(cfg.seed, False)
    peft_model = model_of(cfg, spec)
    generator = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for _, p in peft_model.named_parameters():
            if p.requires_grad:  # LoRA A/B and the head: what training would have changed
                p.add_(0.2 * torch.randn(p.shape, generator=generator))
    save_adapter(peft_model, out_dir / "adapter", record_of(cfg, spec), spec)
    return out_dir


def tokens(n: int = 6, length: int = 12, vocab: int = 30522, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random token ids with a padded tail in half the rows."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (n, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[::2, length // 2 :] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}
