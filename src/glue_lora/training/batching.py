"""The batch of one optimizer step: per-device batch x devices x gradient accumulation.

The paper's recipes record the reference's global batch (its GPUs x per-device batch). A run
reaches it on whatever devices it has by accumulating gradients, so that ``model=roberta_base
task=mnli`` on one GPU trains at batch 128, as the 8-GPU reference did, and not at 16. Step counts
in the config (warm-up, evaluation and checkpoint intervals) count optimizer steps, as in the
reference's Trainer; Lightning counts ``val_check_interval`` in batches, so it is converted here.

On more devices than the reference used (``data.batch_size`` x devices above the global batch), the
per-device batch is lowered to global / devices, so that ``model=roberta_base task=cola`` (2 GPUs x
32 in the reference) trains at 64 on 8 GPUs too, at 8 per device. Only a global batch that the
devices cannot share evenly is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from glue_lora.utils.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    per_device: int
    devices: int  # devices x nodes
    accumulation: int
    requested: int | None  # data.global_batch_size, when set
    configured: int | None = None  # data.batch_size, where the per-device batch was lowered from it

    @property
    def global_batch(self) -> int:
        return self.per_device * self.devices * self.accumulation

    def describe(self) -> str:
        line = (
            f"effective batch size {self.global_batch} (per device {self.per_device} x "
            f"{self.devices} device(s) x {self.accumulation} accumulation step(s))"
        )
        if self.configured is not None:
            line += (
                f": data.batch_size={self.configured} lowered to {self.per_device} per device, so that "
                f"{self.devices} devices reach data.global_batch_size={self.requested}"
            )
        if self.requested is not None and self.accumulation > 1:
            line += (
                f": gradients are accumulated to reach data.global_batch_size={self.requested} "
                "(data.global_batch_size=null: no accumulation)"
            )
        return line


# The trainer settings a batch plan reads.
BATCH_KEYS = ("devices", "accelerator", "num_nodes", "accumulate_grad_batches")


def trainer_settings(trainer: Mapping[str, Any], keys: Sequence[str] = BATCH_KEYS) -> dict[str, Any]:
    """The ``trainer`` settings named by ``keys`` as plain values (a device list as a list), and no
    others, which may need Hydra to resolve."""
    from omegaconf import OmegaConf

    settings = {}
    for key in keys:
        if key in trainer:
            value = trainer.get(key)
            settings[key] = (
                OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            )
    return settings


def count_devices(trainer: Mapping[str, Any]) -> int:
    """Devices x nodes that ``trainer.devices`` / ``trainer.accelerator`` / ``trainer.num_nodes`` give."""
    devices = trainer.get("devices", 1)
    if devices == 0:
        raise ConfigError(
            f"trainer.devices=0: no GPU is visible to this process (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}, or no NVIDIA driver), and "
            "trainer=gpu_node trains on every visible GPU. Run on a GPU node, give a count "
            "(trainer.devices=8), or train on CPU processes (trainer=ddp trainer.accelerator=cpu)."
        )
    if isinstance(devices, list | tuple):
        n = len(devices)
    elif isinstance(devices, int) and devices > 0:
        n = devices
    elif isinstance(devices, str) and devices.strip().isdigit() and int(devices) > 0:
        n = int(devices)
    elif isinstance(devices, str) and "," in devices:
        n = len([d for d in devices.split(",") if d.strip()])
    else:  # "auto" or -1: every GPU when the accelerator may use them, else one process
        gpus = trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        n = torch.cuda.device_count() if gpus else 1
    return max(n, 1) * int(trainer.get("num_nodes", 1) or 1)


def plan_batches(per_device: int, global_batch: int | None, trainer: Mapping[str, Any]) -> BatchPlan:
    """The accumulation that turns ``per_device`` on this run's devices into ``global_batch``."""
    devices = count_devices(trainer)
    accumulate = int(trainer.get("accumulate_grad_batches", 1) or 1)
    if global_batch is None:
        return BatchPlan(per_device, devices, accumulate, None)
    per_step = per_device * devices
    if accumulate != 1:
        raise ConfigError(
            f"data.global_batch_size={global_batch} and trainer.accumulate_grad_batches={accumulate} "
            "both set the accumulation. Keep one: data.global_batch_size=null to accumulate "
            "trainer.accumulate_grad_batches batches, or trainer.accumulate_grad_batches=1."
        )
    if per_step > global_batch and global_batch % devices == 0:
        # more devices than the reference: each takes its share of the global batch
        return BatchPlan(global_batch // devices, devices, 1, global_batch, configured=per_device)
    if per_step > global_batch:
        raise ConfigError(
            f"data.global_batch_size={global_batch} cannot be shared evenly by {devices} devices, and "
            f"data.batch_size={per_device} x {devices} device(s) = {per_step} is already above it. Run "
            f"on a number of devices that divides {global_batch} (trainer.devices=...), or set "
            "data.global_batch_size=null to train at the per-step batch."
        )
    if global_batch % per_step:
        raise ConfigError(
            f"data.global_batch_size={global_batch} is not a multiple of the per-step batch "
            f"{per_step} (data.batch_size={per_device} x {devices} device(s)), so no whole number of "
            "accumulation steps reaches it. Set data.batch_size to a divisor of "
            f"{global_batch // devices if global_batch % devices == 0 else global_batch}, or "
            "data.global_batch_size=null for no accumulation."
        )
    return BatchPlan(per_device, devices, global_batch // per_step, global_batch)


def trainer_batch_arguments(plan: BatchPlan, val_check_interval: Any) -> dict[str, Any]:
    """``lightning.Trainer`` arguments that make config step counts count optimizer steps.

    An integer ``val_check_interval`` means every N optimizer steps of the whole run, across epochs,
    as the reference Trainer's ``eval_steps`` does: Lightning counts it that way only with
    ``check_val_every_n_epoch=None`` (with an epoch count it restarts at every epoch and refuses an
    interval longer than an epoch). ``1.0``, the default, is passed as Lightning's own default
    (None), which Lightning then does not announce on every run.
    """
    arguments: dict[str, Any] = {"accumulate_grad_batches": plan.accumulation}
    if isinstance(val_check_interval, int) and not isinstance(val_check_interval, bool):
        arguments["val_check_interval"] = val_check_interval * plan.accumulation
        arguments["check_val_every_n_epoch"] = None
    elif val_check_interval == 1.0:
        arguments["val_check_interval"] = None
    return arguments
