"""Checks on the composed config that Hydra's composition cannot express: types, ranges, unknown keys.

Hydra refuses an override of a key that does not exist, but a ``+key=...`` override or an
experiment file can add any key, and YAML happily gives a string where a number belongs. The
tables below name the type of every value we read; the groups in ``CLOSED_GROUPS`` may hold no
other keys (a new setting there must be added to its table). Arguments of ``_target_`` nodes
(trainer, optimizer, loggers, callbacks) are checked against the target's signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from glue_lora.data.sampler import check_batching
from glue_lora.data.tasks import get_task
from glue_lora.model.lora import check_lora_a_init
from glue_lora.settings.data import DataSettings
from glue_lora.settings.lora import lora_settings
from glue_lora.settings.method import method_settings
from glue_lora.settings.moved import MOVED_KEYS, check_moved_keys, current_target
from glue_lora.settings.precision import check_precision
from glue_lora.training.batching import plan_batches, trainer_settings
from glue_lora.training.regularizers import validate as validate_regularizers
from glue_lora.utils.errors import ConfigError

# Expected types: a type, a tuple of types, None (null allowed) or ("list", item type).
INT, FLOAT, BOOL, STR = int, (int, float), bool, str
OPT = None
STACKS = ("ours", "peer")

TOP_LEVEL: dict[str, Any] = {
    "seed": INT,
    "stack": STR,
    "deterministic": BOOL,
    "dry_run": BOOL,
    "tf32": BOOL,
    "recipe_precision": (STR, OPT),
    "resume": BOOL,
    "ckpt_path": (STR, OPT),
    "model.pretrained": BOOL,
    "model.trust_remote_code": BOOL,
    "model.lora_targets": ("list", STR),
    "model.trained_in_full": ("list", STR),
    "model.last_layer_cls_only": BOOL,
    "model.fast_dropout": BOOL,
    "model.fused_lora": BOOL,
    "model.lora_a_init": STR,
    "optimizer.lr": FLOAT,
    "optimizer.weight_decay": (FLOAT, OPT),
    "optimizer.eps": (FLOAT, OPT),
    "optimizer.betas": (("list", FLOAT), OPT),
    "trainer.max_epochs": (INT, OPT),
    "trainer.max_steps": INT,
    "trainer.accumulate_grad_batches": INT,
    "trainer.log_every_n_steps": INT,
    "trainer.gradient_clip_val": (FLOAT, OPT),
    "trainer.val_check_interval": (FLOAT, OPT),
    "trainer.check_val_every_n_epoch": (INT, OPT),
    "trainer.num_nodes": INT,
    "trainer.deterministic": (BOOL, STR, OPT),
}

CLOSED_GROUPS: dict[str, dict[str, Any]] = {
    "data": {
        "max_length": INT,
        "batch_size": INT,
        "eval_batch_size": (INT, OPT),
        "num_workers": INT,
        "max_train_rows": (INT, OPT),
        "max_eval_rows": (INT, OPT),
        "skip_malformed_rows": BOOL,
        "dev_from_train": BOOL,
        "cache_dir": (STR, OPT),
        "global_batch_size": (INT, OPT),
        "sampler": STR,
        "padding": STR,
        "pad_to_multiple_of": (INT, OPT),
    },
    "schedule": {"name": STR, "warmup_ratio": (FLOAT, OPT), "warmup_steps": (INT, OPT)},
    "checkpoint": {"every_n_train_steps": (INT, OPT)},
    "lora": {
        "r": INT,
        "alpha": FLOAT,
        "dropout": FLOAT,
        "targets": (("list", STR), OPT),
        "layers": (("list", INT), OPT),
        "bias": STR,
        "budget": (INT, OPT),  # max trainable parameters (null: no limit)
    },
}


def _describe(expected: Any) -> str:
    if expected is None:
        return "null"
    if isinstance(expected, tuple) and expected and expected[0] == "list":
        return f"a list of {_describe(expected[1])}"
    if isinstance(expected, tuple):
        names = [_describe(e) for e in expected]
        return " or ".join(dict.fromkeys(n for n in names if n))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[expected]


def _matches(value: Any, expected: Any) -> bool:
    if expected is None:
        return value is None
    if isinstance(expected, tuple) and expected and expected[0] == "list":
        return isinstance(value, list | tuple) and all(_matches(v, expected[1]) for v in value)
    if isinstance(expected, tuple):
        return any(_matches(value, e) for e in expected)
    if expected in (int, float) and isinstance(value, bool):
        return False  # true/false is not a number
    return isinstance(value, expected)


def _check_type(key: str, value: Any, expected: Any) -> None:
    if not _matches(value, expected):
        raise ConfigError(
            f"{key}={value!r} is invalid: it must be {_describe(expected)}. Fix it on the command line "
            f"({key}=...) or in the config file that sets it."
        )


_UNRESOLVABLE = object()


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key`` as plain data; ``_UNRESOLVABLE`` if absent or not resolvable here."""
    try:
        value = OmegaConf.select(cfg, key, default=_UNRESOLVABLE, throw_on_missing=True)
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except Exception:  # e.g. ${hydra:...} outside a Hydra run: checked where it is used
        return _UNRESOLVABLE
    return value


def check_types(cfg: DictConfig) -> None:
    """Types of the known settings, and no unknown keys in the closed groups."""
    for key, expected in TOP_LEVEL.items():
        value = _value(cfg, key)
        if value is not _UNRESOLVABLE:
            _check_type(key, value, expected)
    for group, table in CLOSED_GROUPS.items():
        node = cfg.get(group)
        if node is None:
            continue
        unknown = sorted(set(node.keys()) - set(table))
        if unknown:
            raise ConfigError(
                f"{group}.{unknown[0]} is not a setting of {group} (its settings are "
                f"{', '.join(sorted(table))}). Check the spelling on the command line or in the "
                "experiment file that sets it."
            )
        for key, expected in table.items():
            value = _value(cfg, f"{group}.{key}")
            if value is not _UNRESOLVABLE:
                _check_type(f"{group}.{key}", value, expected)


def check_target_arguments(plain: Mapping[str, Any]) -> None:
    """Arguments of the ``_target_`` nodes that their callables do not accept (a typo, usually)."""
    from hydra.utils import get_object

    nodes = [("trainer", plain.get("trainer")), ("optimizer", plain.get("optimizer"))]
    for group in ("logger", "callbacks"):
        nodes += [(f"{group}.{name}", node) for name, node in (plain.get(group) or {}).items()]
    for key, node in nodes:
        if not isinstance(node, Mapping) or "_target_" not in node:
            continue
        if current_target(node["_target_"]) != node["_target_"]:
            raise ConfigError(
                f"{key}._target_={node['_target_']!r} names the module where this class was before the "
                f"package was split into subpackages: write {current_target(node['_target_'])!r}."
            )
        try:
            target = get_object(node["_target_"])
        except Exception as err:  # Hydra raises ImportError or its own wrapper
            raise ConfigError(
                f"{key}._target_={node['_target_']!r} cannot be imported ({err}). Check the name, or "
                "install the package that provides it."
            ) from None
        params = inspect.signature(target).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        unknown = sorted(k for k in node if not k.startswith("_") and k not in params)
        if unknown:
            accepted = sorted(n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
            raise ConfigError(
                f"{key}.{unknown[0]} is not an argument of {node['_target_']}. It accepts: "
                f"{', '.join(a for a in accepted if a not in ('self', 'params'))}. Check the spelling."
            )


def _positive_int(value: Any, key: str, example: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            f"{key}={value!r} is invalid: it must be a positive integer (e.g. {key}={example})."
        )


def _in_range(value: Any, key: str, low: float, high: float, rule: str, example: str) -> None:
    if value is not None and not low <= float(value) <= high:
        raise ConfigError(f"{key}={value!r} is invalid: it must be {rule} (e.g. {key}={example}).")


def check_ranges(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    DataSettings.for_training(cfg.data, cfg.task, cfg.get("seed"))  # checks its own ranges
    _in_range(cfg.get("seed"), "seed", 0, 2**32 - 1, "an integer in [0, 2^32)", "0")
    if cfg.get("stack", "ours") not in STACKS:
        raise ConfigError(
            f"stack={cfg.stack!r} is unknown: use ours (our Lightning loop) or peer "
            "(transformers Trainer + peft)."
        )
    lr = cfg.optimizer.get("lr")
    if not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(
            f"optimizer.lr={lr!r} is invalid: the learning rate must be positive (e.g. optimizer.lr=5e-4)."
        )
    _in_range(cfg.optimizer.get("weight_decay"), "optimizer.weight_decay", 0, float("inf"), ">= 0", "0.1")
    for beta in cfg.optimizer.get("betas") or []:
        _in_range(beta, "optimizer.betas", 0, 0.999999, "two numbers in [0, 1)", "[0.9,0.999]")
    ratio = cfg.schedule.get("warmup_ratio") or 0.0
    if not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(f"schedule.warmup_ratio={ratio!r} is invalid: it must be in [0, 1) (e.g. 0.06).")
    _in_range(cfg.schedule.get("warmup_steps"), "schedule.warmup_steps", 0, float("inf"), ">= 0", "500")
    if cfg.schedule.get("name", "linear") not in ("linear", "cosine", "constant"):
        raise ConfigError(f"schedule.name={cfg.schedule.name!r} is unknown: use linear, cosine or constant.")
    fraction = cfg.task.get("val_fraction")
    if fraction is not None and not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"task.val_fraction={fraction!r} is invalid: it must be in (0, 1) (e.g. 0.05).")
    every = (cfg.get("checkpoint") or {}).get("every_n_train_steps")
    _in_range(every, "checkpoint.every_n_train_steps", 0, float("inf"), "0 (off) or more", "200")
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    _in_range(max_epochs, "trainer.max_epochs", -1, float("inf"), "-1 (no limit) or more", "3")
    _in_range(max_steps, "trainer.max_steps", -1, float("inf"), "-1 (no limit) or more", "1000")
    if max_epochs == -1 and max_steps == -1:
        raise ConfigError(
            "trainer.max_epochs=-1 with trainer.max_steps=-1 would train forever: set one of them "
            "(e.g. trainer.max_epochs=3)."
        )
    _positive_int(trainer.get("accumulate_grad_batches", 1), "trainer.accumulate_grad_batches", "2")
    _positive_int(trainer.get("log_every_n_steps", 1), "trainer.log_every_n_steps", "20")
    _in_range(trainer.get("gradient_clip_val"), "trainer.gradient_clip_val", 0, float("inf"), ">= 0", "1.0")
    interval = trainer.get("val_check_interval")
    if isinstance(interval, float) and not 0.0 < interval <= 1.0:
        raise ConfigError(
            f"trainer.val_check_interval={interval} is invalid: a fraction of an epoch must be in (0, 1], "
            "an integer counts optimizer steps (e.g. trainer.val_check_interval=0.5 or =1000)."
        )
    if isinstance(interval, int) and interval < 1:
        _positive_int(interval, "trainer.val_check_interval", "1000")
    check_precision(trainer.get("precision"))


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming the key and the fix for the first invalid value found."""
    get_task(cfg.task.name)
    check_moved_keys({old: _value(cfg, old) for old in MOVED_KEYS if old in cfg})
    check_types(cfg)
    lora_settings(cfg.get("lora"), cfg.model.lora_targets)  # checks its own ranges
    method_settings(cfg.get("method"), cfg.get("lora"))
    validate_regularizers(cfg.get("regularizer"))
    check_ranges(cfg)
    check_batching(cfg.data.get("sampler", "length_grouped"), cfg.data.get("padding", "longest"))
    check_lora_a_init(cfg.model.get("lora_a_init") or "kaiming_uniform")
    plan_batches(cfg.data.batch_size, cfg.data.get("global_batch_size"), trainer_settings(cfg.trainer))
    if not cfg.get("dry_run"):
        check_target_arguments(OmegaConf.to_container(cfg, resolve=False))
