"""Encoder layers, found one way: the blocks ``encoder.layer.<i>`` of BERT, RoBERTa and DeBERTa-v2.

Every module that needs a layer index or the number of layers (``lora.layers``, ``lr_tiers``,
loralib import) reads it here, with the pattern handed to peft as ``layers_pattern``.
"""

from __future__ import annotations

import re

from torch import nn

# All encoders we support number their blocks `encoder.layer.<i>`; peft's `layers_pattern`.
LAYERS_PATTERN = "layer"
_LAYER = re.compile(rf"(?:^|\.){LAYERS_PATTERN}\.(\d+)(?:\.|$)")


def layer_index(name: str) -> int | None:
    """``i`` for a module, parameter or state-dict name inside ``...layer.<i>``; None outside the layers."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def num_layers(model: nn.Module) -> int:
    """Number of encoder layers, from the names of all (also frozen) parameters."""
    ids = [i for name, _ in model.named_parameters() if (i := layer_index(name)) is not None]
    return max(ids) + 1 if ids else 0
