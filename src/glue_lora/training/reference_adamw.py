"""The AdamW of the reference implementation (transformers 4.4.2's ``transformers.AdamW``).

It differs from ``torch.optim.AdamW`` in two places, both of which change the numbers:

- the bias corrections are folded into the step size, so epsilon is added to the *uncorrected*
  ``sqrt(v)``: early in training the effective epsilon is ``eps / sqrt(1 - beta2^t)`` (31.6 x eps
  at step 1). With LoRA's tiny A-gradients this slows A's first steps, as it did in the paper's runs;
- the decoupled weight decay is applied after the Adam update, to the updated weights.

``optimizer=adamw_reference`` selects it; the paper's recipes and ``procedure=reference`` do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class ReferenceAdamW(torch.optim.Optimizer):
    """transformers 4.4.2 ``AdamW`` with ``correct_bias=True``, step for step."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0.0 or eps < 0.0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid AdamW settings: lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
                p.addcdiv_(exp_avg, denom, value=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss
