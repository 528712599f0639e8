"""Config values that name our code by its import path, and the path it has had since the package
was split into subpackages.

A run started before the split recorded, e.g., ``optimizer._target_:
glue_lora.reference_adamw.ReferenceAdamW`` in its checkpoint and results.json; the same optimizer
is now ``glue_lora.training.reference_adamw.ReferenceAdamW``. Resuming such a run (or re-running
its sweep with ``resume=true``) compares the two as the same setting; a config that still names
the old path is refused with the new one.
"""

from __future__ import annotations

from typing import Any

MOVED_TARGETS = {
    "glue_lora.reference_adamw.ReferenceAdamW": "glue_lora.training.reference_adamw.ReferenceAdamW",
    "glue_lora.csv_logger.CSVLogger": "glue_lora.training.csv_logger.CSVLogger",
    "glue_lora.hydra_callbacks.ProtectRunDir": "glue_lora.training.hydra_callbacks.ProtectRunDir",
    "glue_lora.hydra_callbacks.SweepSummary": "glue_lora.training.hydra_callbacks.SweepSummary",
    "glue_lora.hydra_callbacks.OneGpuPerJob": "glue_lora.training.hydra_callbacks.OneGpuPerJob",
}


def current_target(value: Any) -> Any:
    """The import path that ``value`` (a ``_target_``) has now; any other value as it is."""
    return MOVED_TARGETS.get(value, value) if isinstance(value, str) else value
