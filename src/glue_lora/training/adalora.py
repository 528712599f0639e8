"""AdaLoRA's rank schedule in a Lightning run: the ``AdaLoraSchedule`` callback.

AdaLoRA (peft ``AdaLoraModel``) re-allocates its rank budget from the importance of each singular
triplet, which it reads from the weights' gradients: ``update_and_allocate(global_step)`` must run
after every optimizer step and before the gradients are zeroed. Its schedule (``tinit`` steps of
warm-up, the budget's cubic descent, ``tfinal`` steps at the final budget) is in optimizer steps of
the whole run, which only the trainer knows once it has the data; the model is built with a
stand-in (``model.methods.ADALORA_STEPS_UNTIL_KNOWN``) that this callback replaces at fit start.

The orthogonality regulariser needs nothing from us: peft's ``AdaLoraModel.forward`` adds
``orth_reg_weight`` times it to the output's ``loss`` whenever labels are given, and our training loss
(``training/regularizers.py``) is built from that ``.loss``. (So is the logged ``val/loss``.)
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from glue_lora.utils.errors import ConfigError


def schedule_steps(value: float, total_steps: int, key: str) -> int:
    """``tinit`` / ``tfinal`` in optimizer steps: a value below 1 is a fraction of ``total_steps``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(
            f"method.peft_options.{key}={value!r} is invalid: give a number of optimizer steps, or a "
            f"fraction of the run's steps below 1 (e.g. {key}=0.1)."
        )
    if value < 1:
        return math.ceil(value * total_steps) if value > 0 else 0
    if value != int(value):
        raise ConfigError(
            f"method.peft_options.{key}={value!r} is invalid: from 1 up it is a number of optimizer "
            f"steps, a whole number (or a fraction below 1 of the run's steps)."
        )
    return int(value)


def set_schedule(config: Any, total_steps: int) -> tuple[int, int]:
    """Set ``config`` (peft's AdaLoraConfig) to a run of ``total_steps`` optimizer steps: total_step,
    and tinit / tfinal in steps. Refuses a schedule with no room for the budget's descent."""
    tinit = schedule_steps(config.tinit, total_steps, "tinit")
    tfinal = schedule_steps(config.tfinal, total_steps, "tfinal")
    if tinit + tfinal >= total_steps:
        raise ConfigError(
            f"method=adalora: tinit={config.tinit} ({tinit} steps) and tfinal={config.tfinal} "
            f"({tfinal} steps) leave no steps for the rank budget to descend in a run of "
            f"{total_steps} optimizer steps (AdaLoRA needs tinit + tfinal < total steps). Lower "
            "method.peft_options.tinit / tfinal (fractions below 1 scale with the run, e.g. tinit=0.1 "
            "tfinal=0.2), or train for more steps."
        )
    config.total_step, config.tinit, config.tfinal = total_steps, tinit, tfinal
    return tinit, tfinal


def adalora_model(pl_module: L.LightningModule) -> Any:
    """The peft ``AdaLoraModel`` inside ``pl_module.model`` (a ``PeftModel``)."""
    tuner = getattr(getattr(pl_module, "model", None), "base_model", None)
    if tuner is None or not hasattr(tuner, "rankallocator"):
        raise ConfigError(
            "AdaLoraSchedule is added for method=adalora, but the model is not a trainable peft "
            "AdaLoRA model. Use it only with method.peft_type=adalora."
        )
    return tuner


def _to_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu() for name, t in tensors.items()}


class AdaLoraSchedule(L.Callback):
    """Runs AdaLoRA's budget schedule: sets its steps at fit start, allocates after every optimizer step.

    Its state (the importance averages and the rank pattern) goes into checkpoints, so that
    ``resume=true`` continues the schedule where it stopped.
    """

    def __init__(self) -> None:
        self._tuner: Any = None
        self._restored: dict[str, Any] | None = None
        self._last_step = -1

    @property
    def state_key(self) -> str:
        return "AdaLoraSchedule"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._tuner = adalora_model(pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the checkpoint's callback states are loaded (load_state_dict), before training.
        config = self._tuner.peft_config[self._tuner.trainable_adapter_name]
        set_schedule(config, int(trainer.estimated_stepping_batches))
        if self._restored is not None:
            self._restore(self._tuner, self._restored)
            self._restored = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step  # restored by now when resuming

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Why here: in Lightning's automatic optimization the gradients of a step are zeroed at the
        # start of the *next* step's closure (so on_before_zero_grad would come one step late, with
        # the next batch not yet seen, and never after the last step), or before a validation run
        # (on_validation_model_zero_grad, after this hook). on_train_batch_end follows
        # optimizer.step() and the LR scheduler's step with the gradients still there. With gradient
        # accumulation it also follows every micro-batch, so it acts only when global_step moved:
        # once per optimizer step. global_step then counts the steps done (1 after the first), which
        # makes peft's schedule exact: steps 1..tinit warm up, the last tfinal keep the final budget.
        if trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        self._tuner.update_and_allocate(trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        if self._restored is not None:  # loaded but not yet applied: keep it as it came
            return dict(self._restored)
        return {} if self._tuner is None else self._state_of(self._tuner)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied at fit start, when the model is on its device.
        self._restored = dict(state_dict) if state_dict else None

    @staticmethod
    def _state_of(tuner: Any) -> dict[str, Any]:
        allocator = tuner.rankallocator
        config = tuner.peft_config[tuner.trainable_adapter_name]
        return {
            "ipt": _to_cpu(allocator.ipt),
            "exp_avg_ipt": _to_cpu(allocator.exp_avg_ipt),
            "exp_avg_unc": _to_cpu(allocator.exp_avg_unc),
            "rank_pattern": None if config.rank_pattern is None else dict(config.rank_pattern),
        }

    @staticmethod
    def _restore(tuner: Any, state: dict[str, Any]) -> None:
        allocator = tuner.rankallocator
        devices = {name: p.device for name, p in tuner.model.named_parameters()}
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            tensors = state.get(key) or {}
            setattr(allocator, key, {name: t.to(devices.get(name, t.device)) for name, t in tensors.items()})
        config = tuner.peft_config[tuner.trainable_adapter_name]
        config.rank_pattern = state.get("rank_pattern")
