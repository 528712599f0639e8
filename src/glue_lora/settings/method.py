"""The ``method`` config group as typed settings: which PEFT method trains the model, and its options.

A method is one small YAML file in ``conf/method/`` (``lora``, ``dora``, ``vera``, ``bitfit`` ...).
What each method trains and how it maps onto peft is in ``glue_lora.methods``; this module only
reads and checks the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from glue_lora.settings.lora import LoraSettings, lora_label
from glue_lora.utils.errors import ConfigError

# How the weights are trained: a peft adapter, a chosen subset of the model's own weights, or all.
TRAINS = ("adapter", "biases", "head", "all")
OPTIMIZERS = ("default", "loraplus", "lora_fa")
# LoRA starts (peft ``init_lora_weights``) computed from batches of the task's train split: EVA from
# the layers' inputs, CorDA from their covariance, LoRA-GA from the weights' gradients.
DATA_DRIVEN_STARTS = ("eva", "corda", "lora_ga")
# Of those, the ones that leave W - scale B0 A0 in the frozen weight: their adapter keeps B0 and A0,
# since loading reads no train batches. (PiSSA and OLoRA do too, but from the weight alone: loading
# recomputes them.)
DATA_DRIVEN_RESIDUAL_STARTS = ("corda", "lora_ga")


@dataclass(frozen=True)
class MethodSettings:
    """One PEFT method: its name, what it trains, peft's config type and options, and its optimizer.

    ``peft_type`` names the peft config (``lora``, ``adalora``, ``vera``, ``ia3``, ``fourierft``) and
    ``peft_options`` are passed to it as they are written, so a method is peft's own API. Methods
    of the LoRA family (``uses_lora_group``) take rank, alpha, dropout, targets and layers from the
    ``lora`` group.
    """

    name: str
    trains: str = "adapter"
    peft_type: str | None = "lora"
    uses_lora_group: bool = True
    peft_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "default"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    calibration_batches: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"method.name={self.name!r} is invalid: name the method (e.g. method=dora).")
        if self.trains not in TRAINS:
            raise ConfigError(
                f"method.trains={self.trains!r} is invalid: use one of {', '.join(TRAINS)} "
                "(adapter: a peft adapter; biases: BitFit; head: a linear probe; all: full fine-tuning)."
            )
        if (self.trains == "adapter") != (self.peft_type is not None):
            raise ConfigError(
                f"method {self.name!r}: method.peft_type={self.peft_type!r} with method.trains="
                f"{self.trains!r}. An adapter method names its peft config (e.g. peft_type: lora); "
                "biases, head and all train the model's own weights and set peft_type: null."
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"method.optimizer={self.optimizer!r} is invalid: use one of {', '.join(OPTIMIZERS)} "
                "(default: optimizer=; loraplus: peft's create_loraplus_optimizer; lora_fa: "
                "peft's create_lorafa_optimizer)."
            )
        if self.needs_calibration and not (
            isinstance(self.calibration_batches, int) and self.calibration_batches >= 1
        ):
            raise ConfigError(
                f"method={self.name} starts LoRA from batches of the train split (init_lora_weights="
                f"{self.start}), so method.calibration_batches must be a positive integer, not "
                f"{self.calibration_batches!r} (e.g. method.calibration_batches=16)."
            )

    @property
    def start(self) -> str | bool:
        """peft's ``init_lora_weights`` for this method (True: LoRA's own random A, zero B)."""
        return self.peft_options.get("init_lora_weights", True)

    @property
    def needs_calibration(self) -> bool:
        return self.peft_type == "lora" and self.start in DATA_DRIVEN_STARTS

    @property
    def saves_initial_adapter(self) -> bool:
        """CorDA and LoRA-GA: the base's residual comes from data, so B0 and A0 are kept to rebuild it."""
        return self.needs_calibration and self.start in DATA_DRIVEN_RESIDUAL_STARTS

    @classmethod
    def from_mapping(cls, method: Mapping[str, Any]) -> MethodSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(method) - known)
        if unknown:
            raise ConfigError(
                f"method has unknown key(s) {unknown}: its keys are {sorted(known)}. Options of the "
                "peft config go under method.peft_options, those of the optimizer under "
                "method.optimizer_options."
            )
        values = dict(method)
        values["peft_options"] = dict(values.get("peft_options") or {})
        values["optimizer_options"] = dict(values.get("optimizer_options") or {})
        return cls(**values)

    @property
    def is_full(self) -> bool:
        return self.trains == "all"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trains": self.trains,
            "peft_type": self.peft_type,
            "uses_lora_group": self.uses_lora_group,
            "peft_options": dict(self.peft_options),
            "optimizer": self.optimizer,
            "optimizer_options": dict(self.optimizer_options),
            "calibration_batches": self.calibration_batches,
        }


LORA = MethodSettings(name="lora")
FULL = MethodSettings(name="full", trains="all", peft_type=None, uses_lora_group=False)


def method_settings(method_node: Any, lora_node: Any) -> MethodSettings:
    """The ``method`` group as settings. ``lora=none`` with the LoRA method is full fine-tuning, as
    it always was; a run or adapter recorded before methods existed (no ``method``) is LoRA."""
    if method_node is None:
        return FULL if lora_node is None else LORA
    plain = (
        OmegaConf.to_container(method_node, resolve=True)
        if isinstance(method_node, DictConfig)
        else method_node
    )
    method = MethodSettings.from_mapping(plain)
    if method.uses_lora_group and lora_node is None:
        if method == LORA:
            return FULL
        raise ConfigError(
            f"method={method.name} takes its rank, alpha and targets from the lora group, but "
            "lora=none. Drop lora=none (or pick lora=r8|r16), or use method=full for full fine-tuning."
        )
    return method


def method_label(method: MethodSettings, lora: LoraSettings | Mapping[str, Any] | None) -> str:
    """Short name of a run's method: ``r8-a16`` (LoRA), ``dora-r8-a16``, ``vera``, ``bitfit``, ``full``.

    ``lora``: the run's settings, or the ``lora`` dict a results.json recorded."""
    if isinstance(lora, LoraSettings):
        lora = lora.as_dict()
    if method.is_full:
        return "full"
    if method.peft_type == "lora" and method.name == "lora":
        return lora_label(lora)
    if method.uses_lora_group and lora is not None:
        return f"{method.name}-{lora_label(lora)}"
    return method.name


def recorded_method(method_node: Any, lora_node: Any) -> MethodSettings:
    """The method a run recorded (results.json's ``method``, or its saved config's), as settings.

    Old results have no ``method``: LoRA, or full fine-tuning where ``lora`` is null. A record that no
    longer passes the checks keeps its name (a report reads what was run, it does not refuse it).
    """
    try:
        return method_settings(method_node, lora_node)
    except ConfigError:
        name = (method_node or {}).get("name") if isinstance(method_node, Mapping) else None
        return MethodSettings(name=str(name or "?"), trains="adapter", peft_type="unknown")


def run_label(record: Mapping[str, Any]) -> str:
    """The method label of a run from its results.json (or saved config): its ``method`` and ``lora``."""
    method = recorded_method(record.get("method"), record.get("lora"))
    return method_label(method, record.get("lora") if method.uses_lora_group else None)


def run_method_name(record: Mapping[str, Any]) -> str:
    """The method's name alone (``lora``, ``dora``, ``vera``, ``full``): what papers' rows are keyed by."""
    method = recorded_method(record.get("method"), record.get("lora"))
    return "full" if method.is_full else method.name


def run_rank(record: Mapping[str, Any]) -> int | None:
    """The rank a run used: the lora group's for LoRA-family methods, ``peft_options.r`` for VeRA."""
    method = recorded_method(record.get("method"), record.get("lora"))
    lora = record.get("lora")
    if method.uses_lora_group and isinstance(lora, Mapping):
        return lora.get("r")
    return method.peft_options.get("r")
