"""Optimizer parameter groups: weight decay split and layer-wise learning-rate tiers (``lr_tiers``).

A tier names encoder layers (BERT, RoBERTa and DeBERTa-v2 all number them ``encoder.layer.<i>``),
the embeddings (layer -1, with DeBERTa's shared relative embeddings, their norm and conv) or the
head (classifier and poolers: everything above the encoder), and gives them a learning rate. Each
tier becomes one param group, split in two when it holds biases or norm weights (no weight decay).
Trainable parameters in no tier form a ``rest`` group at ``optimizer.lr``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from glue_lora.model.layers import layer_index, num_layers
from glue_lora.utils.errors import ConfigError

# Parameters whose names contain these are excluded from weight decay (biases and norms).
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")

EMBEDDINGS = -1
HEAD = "head"
REST = "rest"
TIER_KEYS = {"layers", "lr", "weight_decay"}


def parameter_location(name: str) -> int | str:
    """``N`` for ``encoder.layer.N.``, -1 for embeddings (and the rest of the encoder), else ``head``."""
    if (index := layer_index(name)) is not None:
        return index
    parts = name.split(".")
    if "embeddings" in parts or "encoder" in parts:
        return EMBEDDINGS
    return HEAD


@dataclass(frozen=True)
class Tier:
    name: str
    layers: str  # as written in the config, for the table
    members: frozenset[int | str]
    options: dict[str, float]  # lr, weight_decay: passed to the param group


def _parse_members(name: str, spec: Any, n_layers: int) -> frozenset[int | str]:
    items = [spec] if isinstance(spec, str | int) else list(spec)
    members: set[int | str] = set()
    for item in items:
        text = str(item).strip()
        if text in (HEAD, "embeddings"):
            members.add(HEAD if text == HEAD else EMBEDDINGS)
        elif re.fullmatch(r"-?\d+", text):
            members.add(int(text))
        elif match := re.fullmatch(r"(\d+)\s*-\s*(\d+)", text):
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise ConfigError(
                    f"lr_tiers.{name}.layers={text!r} is an empty range: write first-last with "
                    f"first <= last (e.g. {last}-{first})."
                )
            members.update(range(first, last + 1))
        else:
            raise ConfigError(
                f"lr_tiers.{name}.layers={item!r} is not understood. Use a layer index (4), an "
                "inclusive range ('0-3'), a list of them, 'embeddings' (layer -1) or 'head'."
            )
    bad = sorted(m for m in members if isinstance(m, int) and not EMBEDDINGS <= m < n_layers)
    if bad:
        raise ConfigError(
            f"lr_tiers.{name}.layers names layer(s) {bad} but the model has layers 0..{n_layers - 1} "
            "(and -1 for the embeddings). Fit the tiers to the model, e.g. with lr_tiers=none or "
            f"lr_tiers.{name}.layers=0-{max(n_layers - 1, 0)}."
        )
    return frozenset(members)


def parse_tiers(config: Mapping[str, Any] | None, n_layers: int) -> list[Tier]:
    """Read ``lr_tiers`` (tier name -> {layers, lr, weight_decay}); fail on unknown keys or overlaps."""
    tiers: list[Tier] = []
    owner: dict[int | str, str] = {}
    for name, spec in (config or {}).items():
        if not isinstance(spec, Mapping) or "layers" not in spec:
            raise ConfigError(
                f"lr_tiers.{name} must be a mapping with layers and lr, e.g. "
                f"lr_tiers.{name}={{layers:0-3,lr:1e-5}}."
            )
        unknown = set(spec) - TIER_KEYS
        if unknown:
            raise ConfigError(
                f"lr_tiers.{name} has unknown key(s) {sorted(unknown)}; a tier takes {sorted(TIER_KEYS)}."
            )
        options = {k: float(spec[k]) for k in ("lr", "weight_decay") if spec.get(k) is not None}
        if options.get("lr", 1.0) <= 0:
            raise ConfigError(f"lr_tiers.{name}.lr={spec['lr']!r} is invalid: it must be positive.")
        members = _parse_members(str(name), spec["layers"], n_layers)
        for member in sorted(members, key=str):
            if member in owner:
                raise ConfigError(
                    f"lr_tiers.{name} and lr_tiers.{owner[member]} both claim layer {member}: "
                    "each layer (and the head) may belong to one tier only."
                )
            owner[member] = str(name)
        layers = spec["layers"]
        shown = ",".join(map(str, layers)) if not isinstance(layers, str | int) else str(layers)
        tiers.append(Tier(str(name), shown, members, options))
    return tiers


def _plan(model: nn.Module, config: Mapping[str, Any] | None) -> list[tuple[Tier, list, list]]:
    """Each tier (then ``rest``) with its trainable (name, parameter) pairs: (decay, no decay)."""
    tiers = parse_tiers(config, num_layers(model))
    rest = Tier(REST, "other", frozenset(), {})
    buckets = {t.name: ([], []) for t in [*tiers, rest]}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        location = parameter_location(name)
        tier = next((t for t in tiers if location in t.members), rest)
        buckets[tier.name][any(k in name for k in NO_DECAY)].append((name, p))
    return [(t, *buckets[t.name]) for t in [*tiers, rest]]


def param_groups(model: nn.Module, config: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Param groups of ``model``'s trainable parameters for the optimizer.

    Without tiers: [decay, no decay], as the optimizer's defaults. With tiers: one group per tier
    (two when it holds no-decay parameters), named for the LearningRateMonitor; empty ones dropped.
    """
    if not config:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = [p for n, p in params if not any(k in n for k in NO_DECAY)]
        no_decay = [p for n, p in params if any(k in n for k in NO_DECAY)]
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups: list[dict[str, Any]] = []
    for tier, decay, no_decay in _plan(model, config):
        if decay:
            groups.append({"params": [p for _, p in decay], "name": tier.name, **tier.options})
        if no_decay:
            groups.append(
                {
                    "params": [p for _, p in no_decay],
                    "name": f"{tier.name}-no_decay",
                    **tier.options,
                    "weight_decay": 0.0,
                }
            )
    return groups


def tier_table(model: nn.Module, config: Mapping[str, Any], default_lr: float) -> str:
    """The tiers as a table: tier, layers, trainable parameters, learning rate."""
    rows = []
    for tier, decay, no_decay in _plan(model, config):
        params = [*decay, *no_decay]
        count = sum(p.numel() for _, p in params)
        if tier.name == REST and not count:
            continue
        layers = _describe({parameter_location(n) for n, _ in params}) if tier.name == REST else tier.layers
        rows.append((tier.name, layers, count, tier.options.get("lr", default_lr)))
    return _format(rows)


def _describe(locations: set[int | str]) -> str:
    """E.g. {-1, 2, 3, 4, 'head'} -> 'embeddings,2-4,head'."""
    layers = sorted(loc for loc in locations if isinstance(loc, int) and loc != EMBEDDINGS)
    runs: list[list[int]] = []
    for i in layers:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = ["embeddings"] if EMBEDDINGS in locations else []
    parts += [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return ",".join(parts + ([HEAD] if HEAD in locations else []))


def _format(rows: Iterable[tuple[str, str, int, float]]) -> str:
    lines = [f"{'tier':<12}{'layers':<14}{'parameters':>14}{'lr':>12}"]
    lines += [f"{t:<12}{layers:<14}{n:>14,}{lr:>12.2e}" for t, layers, n, lr in rows]
    return "\n".join(lines)
