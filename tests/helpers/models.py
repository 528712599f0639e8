"""Models built twice to compare a switch: same weights, the flag off and on."""

from __future__ import annotations

from typing import Any

from tests.helpers.runs import compose_train, model_of


def flag_twins(model: str, flag: str) -> tuple[Any, Any]:
    """``model`` built with ``model.<flag>=false`` and ``=true``, with the same weights.

    LoRA B starts at zero; it is drawn at random here so that LoRA matters in the comparison.
    """
    import torch

    from glue_lora.data.tasks import get_task

    torch.manual_seed(0)
    off = model_of(compose_train([f"model={model}", f"model.{flag}=false"]), get_task("sst2"))
    on = model_of(compose_train([f"model={model}", f"model.{flag}=true"]), get_task("sst2"))
    with torch.no_grad():
        for name, p in off.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    on.load_state_dict(off.state_dict())
    return off, on


def eval_logits_and_grads(net: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, dict[str, Any]]:
    """Logits and the trained parameters' gradients of one batch in eval mode (no dropout)."""
    net.eval()
    out = net(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    return out.logits, {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
