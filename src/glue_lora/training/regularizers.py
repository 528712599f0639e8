"""Training losses with consistency regularisers from the MNLI reference code: R-Drop and Cutoff.

- R-Drop (Liang et al., 2021), ``regularizer.rdrop_alpha > 0``: two forward passes of the same batch with
  different dropout masks; loss = (CE1 + CE2) / 2 + alpha * (KL(p1||p2) + KL(p2||p1)) / 2.
- Cutoff (Shen et al., 2020), ``regularizer.cutoff.kind = token | span``: a second forward pass on the
  word embeddings with ``ratio`` of each sequence's tokens zeroed and masked out (random tokens, or
  one contiguous span); loss = CE(original) + ce_weight * CE(cut off) + js_weight * JS(p, p_cut).

Both cost one extra forward and backward pass per step. For regression (STS-B) the KL / JS terms
are the mean squared difference of the two predictions. Plain training does one pass: loss = CE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from glue_lora.settings.regularizer import RegularizerSettings

# batch (a dict of tensors) -> the model's output, with .loss and .logits
Forward = Callable[[Mapping[str, Any]], Any]


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """(KL(p||q) + KL(q||p)) / 2 of the softmax distributions, summed over classes, batch mean."""
    log_p, log_q = F.log_softmax(logits_p, dim=-1), F.log_softmax(logits_q, dim=-1)
    kl_pq = (log_p.exp() * (log_p - log_q)).sum(-1)
    kl_qp = (log_q.exp() * (log_q - log_p)).sum(-1)
    return 0.5 * (kl_pq + kl_qp).mean()


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (KL(p||m) + KL(q||m)) / 2, m = (p + q) / 2, batch mean."""
    log_p, log_q = F.log_softmax(logits_p, dim=-1), F.log_softmax(logits_q, dim=-1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm).mean()


def cutoff(
    embeds: torch.Tensor, attention_mask: torch.Tensor, kind: str, ratio: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero ``int(ratio * length)`` real tokens of each row's embeddings and mask them out.

    ``token`` picks them at random (without replacement), ``span`` as one contiguous run at a
    random start. Padding is never touched.
    """
    cut = torch.zeros_like(attention_mask)
    for row in range(embeds.shape[0]):
        real = attention_mask[row].nonzero().flatten()
        n_cut = int(len(real) * ratio)
        if n_cut == 0:
            continue
        if kind == "token":
            positions = real[torch.randperm(len(real), device=real.device)[:n_cut]]
        else:
            start = int(torch.randint(0, len(real) - n_cut + 1, (1,)))
            positions = real[start : start + n_cut]
        cut[row, positions] = 1
    keep = 1 - cut
    return embeds * keep.unsqueeze(-1).to(embeds.dtype), attention_mask * keep


def _consistency(regression: bool, divergence: Callable, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(a.float(), b.float()) if regression else divergence(a.float(), b.float())


@dataclass(frozen=True)
class TrainingLoss:
    """The loss of one training step; ``__call__`` returns {"loss": total, other logged terms}."""

    regression: bool = False
    rdrop_alpha: float = 0.0
    cutoff_kind: str | None = None
    cutoff_ratio: float = 0.1
    cutoff_ce_weight: float = 1.0
    cutoff_js_weight: float = 1.0

    @classmethod
    def from_config(cls, regularizer: Mapping[str, Any] | None, regression: bool) -> TrainingLoss:
        """From the ``regularizer`` group, range-checked by ``settings.regularizer.RegularizerSettings``."""
        settings = RegularizerSettings.from_mapping(regularizer)
        return cls(
            regression=regression,
            rdrop_alpha=float(settings.rdrop_alpha),
            cutoff_kind=settings.cutoff_kind,
            cutoff_ratio=float(settings.cutoff_ratio),
            cutoff_ce_weight=float(settings.cutoff_ce_weight),
            cutoff_js_weight=float(settings.cutoff_js_weight),
        )

    @property
    def forward_passes(self) -> int:
        return 2 if self.rdrop_alpha > 0 or self.cutoff_kind else 1

    def __call__(
        self, forward: Forward, embeddings: nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if self.rdrop_alpha > 0:
            first, second = forward(batch), forward(batch)
            kl = _consistency(self.regression, symmetric_kl, first.logits, second.logits)
            return {"loss": 0.5 * (first.loss + second.loss) + self.rdrop_alpha * kl, "rdrop_kl": kl}
        if self.cutoff_kind:
            original = forward(batch)
            embeds, mask = cutoff(
                embeddings(batch["input_ids"]), batch["attention_mask"], self.cutoff_kind, self.cutoff_ratio
            )
            cut = forward({**batch, "input_ids": None, "inputs_embeds": embeds, "attention_mask": mask})
            js = _consistency(self.regression, js_divergence, original.logits, cut.logits)
            loss = original.loss + self.cutoff_ce_weight * cut.loss + self.cutoff_js_weight * js
            return {"loss": loss, "cutoff_ce": cut.loss, "cutoff_js": js}
        return {"loss": forward(batch).loss}


def validate(regularizer: Mapping[str, Any] | None) -> None:
    """Reject invalid ``regularizer.*`` values before a model is built (``RegularizerSettings``)."""
    RegularizerSettings.from_mapping(regularizer)
