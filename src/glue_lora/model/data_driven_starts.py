"""LoRA starts computed from batches of the task's train split (peft ``init_lora_weights``):

- ``eva`` (Paischer et al. 2024, arXiv 2410.07170): A from the top right-singular vectors of each
  layer's inputs, ranks redistributed by explained variance (``eva_config.rho``), B zero.
  The frozen weights stay as they are.
- ``corda`` (Yang et al. 2024, arXiv 2406.05223): A and B from the SVD of the weight times its
  inputs' covariance; the frozen weight keeps ``W - scale B0 A0``.
- ``lora_ga`` (Wang et al. 2024, arXiv 2407.05000): A and B from the SVD of the weight's averaged
  gradient; the frozen weight keeps ``W - scale B0 A0``.

Calibration runs in eval mode (no dropout) under ``torch.no_grad`` except for LoRA-GA's backward,
and draws nothing from the global random stream. A model rebuilt from a saved adapter gets no
batches: it is built with LoRA's default start and its values are loaded. For CorDA and LoRA-GA
the base must then be the residual the run trained on: :func:`initial_adapter` keeps B0 and A0
with the adapter and :func:`restore_residual` subtracts them from the rebuilt base.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from glue_lora.model.lora import START_SUB_CONFIGS
from glue_lora.settings.method import DATA_DRIVEN_STARTS, MethodSettings

Batch = Mapping[str, torch.Tensor]


def _model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    # EVA reads a per-token "labels" as a padding mask (language modelling); ours are per-sentence.
    return {k: v for k, v in batch.items() if k != "labels"}


def _rows(batch: Batch) -> list[dict[str, torch.Tensor]]:
    """The batch's rows one by one, without padding (CorDA's hook reads one sequence per forward)."""
    inputs = _model_inputs(batch)
    lengths = inputs["attention_mask"].sum(dim=1).tolist()
    return [{k: v[i : i + 1, : int(n)] for k, v in inputs.items()} for i, n in enumerate(lengths)]


def _run_model(model: nn.Module, batches: Sequence[Batch]) -> Callable[[], None]:
    def run() -> None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for batch in batches:
                for row in _rows(batch):
                    model(**row)
        model.train(was_training)

    return run


def _train_step(model: nn.Module, batches: Sequence[Batch]) -> Callable[[], None]:
    """LoRA-GA's gradient estimate: the loss of each batch, back-propagated (peft averages them)."""

    def step() -> None:
        was_training = model.training
        model.eval()
        for batch in batches:
            model(**batch).loss.backward()
        model.train(was_training)

    return step


# Starts that need what a dry run or a rebuilt adapter lacks: train batches, or a GPU (LoftQ).
STAND_IN_FOR = {*DATA_DRIVEN_STARTS, "loftq"}


def stand_in(peft_options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``peft_options`` with LoRA's default start in place of one computed from batches or on a GPU:
    the same shapes, for values loaded next (an adapter, a checkpoint) or only counted (dry_run)."""
    if peft_options.get("init_lora_weights") not in STAND_IN_FOR:
        return peft_options
    options = {k: v for k, v in peft_options.items() if k not in START_SUB_CONFIGS}
    return {**options, "init_lora_weights": True}


def before_wrap(method: MethodSettings, batches: Sequence[Batch]) -> Callable[[nn.Module, Any], None] | None:
    """What runs on the bare model before peft wraps it: CorDA's covariances, LoRA-GA's gradients."""
    if method.start == "corda":
        from peft.tuners.lora.corda import preprocess_corda

        return lambda model, config: preprocess_corda(model, config, run_model=_run_model(model, batches))
    if method.start == "lora_ga":
        from peft.tuners.lora.loraga import preprocess_loraga

        return lambda model, config: preprocess_loraga(model, config, train_step=_train_step(model, batches))
    return None


def after_wrap(peft_model: nn.Module, method: MethodSettings, batches: Sequence[Batch]) -> None:
    """What runs on the wrapped model: EVA's incremental SVD of the layer inputs."""
    if method.start != "eva":
        return
    from peft import initialize_lora_eva_weights

    was_training = peft_model.training
    peft_model.eval()
    with torch.no_grad():
        initialize_lora_eva_weights(
            peft_model, dataloader=[_model_inputs(b) for b in batches], show_progress_bar=False
        )
    peft_model.train(was_training)


# Starts derived from the pretrained weights by an SVD or a QR (peft ``init_lora_weights``).
WEIGHT_DERIVED_STARTS = ("pissa", "olora")


def computes_start(method: MethodSettings) -> bool:
    """Whether ``method``'s start is computed (an SVD, a QR, a pass over train batches): work that
    belongs on the rank's own accelerator, not on its CPU."""
    start = method.start
    if method.peft_type != "lora" or not isinstance(start, str):
        return False
    return start in DATA_DRIVEN_STARTS or start.startswith(WEIGHT_DERIVED_STARTS)


def initial_adapter(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each LoRA layer's B0 and A0 as the start left them, by their names in the model (on the CPU)."""
    return {
        name: p.detach().cpu().clone()
        for name, p in model.named_parameters()
        if ".lora_A." in name or ".lora_B." in name
    }


@torch.no_grad()
def restore_residual(model: nn.Module, initial: Mapping[str, torch.Tensor], adapter: str = "default") -> None:
    """Turn the rebuilt base's weights into the run's residual, ``W - scale B0 A0``, from ``initial``
    (what :func:`initial_adapter` kept); the A and B loaded afterwards then compute what they did."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import transpose

    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        a0 = initial[f"{name}.lora_A.{adapter}.weight"].float()
        b0 = initial[f"{name}.lora_B.{adapter}.weight"].float()
        base = module.get_base_layer()
        delta = transpose(module.scaling[adapter] * (b0 @ a0), module.fan_in_fan_out)
        base.weight.data = (base.weight.data.float() - delta).to(base.weight.dtype)
