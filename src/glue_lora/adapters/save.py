"""Saving a run's adapter: the peft adapter and head (PEFT layout), the weights a BitFit or head-only
run trained, or the whole model, with its record (glue_lora.json) and model card, atomically."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import OmegaConf

from glue_lora.adapters.model_card import CARD, adapter_card, shareable_base
from glue_lora.adapters.record import INITIAL_ADAPTER, RECORD, TRAINED_WEIGHTS, shared_base_name
from glue_lora.data.tasks import TaskSpec
from glue_lora.model.methods import trained_weights
from glue_lora.settings.method import method_settings
from glue_lora.utils.artifacts import atomic_save_pretrained
from glue_lora.utils.redact import redact
from glue_lora.utils.shareable import shareable


def save_adapter(
    model: torch.nn.Module,
    adapter_dir: Path,
    record: dict[str, Any],
    spec: TaskSpec,
    results: dict[str, Any] | None = None,
    initial_adapter: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Save the adapter and head (PEFT layout), the trained tensors of BitFit or a linear probe
    (``trained_weights.safetensors``), or the whole model for full fine-tuning.

    ``glue_lora.json`` beside them (``record``, from ``adapters.record.adapter_record``) records
    what eval.py needs to rebuild the base model (the
    local source of its weights too); ``adapter_config.json`` names the base by its Hub id where
    the weights were a packaged copy of it, so the directory loads on another machine. With
    ``results``, a model card (README.md) is written beside them. ``initial_adapter`` (CorDA,
    LoRA-GA: B0 and A0 as the start left them) is saved as ``initial_adapter.safetensors``, from
    which loading rebuilds the residual base the adapter was trained on.
    """
    record = shareable(redact(record))  # no secrets, and no paths of this machine
    extra_text = {}
    if results is not None:
        extra_text[CARD] = adapter_card(results["config"], spec, results, run_command())
    method = method_settings(record.get("method"), record.get("lora"))
    if method.trains in ("biases", "head"):
        # Only what the run trained: the rest is the base, rebuilt from the record when loading.
        saved = SimpleNamespace(save_pretrained=lambda path: save_trained_weights(model, Path(path)))
        atomic_save_pretrained(saved, adapter_dir, extra_json={RECORD: record}, extra_text=extra_text)
        return
    # The vocabulary is never resized, so peft's "auto" check of the base's config on the Hub (a
    # network call at every save once the base is named by its Hub id) has nothing to find.
    save_kwargs = {"save_embedding_layers": False} if hasattr(model, "peft_config") else None
    saved = model
    if initial_adapter is not None:

        def save_with_initial(path: str | Path, **kwargs: Any) -> None:
            from safetensors.torch import save_file

            model.save_pretrained(path, **kwargs)
            tensors = {k: t.detach().cpu().contiguous() for k, t in initial_adapter.items()}
            save_file(tensors, Path(path) / INITIAL_ADAPTER)

        saved = SimpleNamespace(save_pretrained=save_with_initial)
    with shared_base_name(model, shareable_base(record["model"])), exact_rank_pattern(model):
        atomic_save_pretrained(
            saved, adapter_dir, extra_json={RECORD: record}, extra_text=extra_text, save_kwargs=save_kwargs
        )


def save_trained_weights(model: torch.nn.Module, directory: Path) -> Path:
    """``directory/trained_weights.safetensors``: the tensors that train, by their names in the model."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in trained_weights(model).items()}
    save_file(tensors, directory / TRAINED_WEIGHTS)
    return directory / TRAINED_WEIGHTS


@contextmanager
def exact_rank_pattern(model: torch.nn.Module) -> Iterator[None]:
    """While saving, widen AdaLoRA's rank pattern to every rank whose singular value is not zero.

    peft saves an AdaLoRA adapter cut to ``config.rank_pattern``, the ranks of its last budget
    allocation. Between allocations, and in a best checkpoint older than the last one, ranks outside
    the pattern can hold non-zero values that the model used; cutting them would change its outputs.
    Kept, the saved adapter computes what the trained one did (a pruned rank, E = 0, adds nothing).
    """
    configs = getattr(model, "peft_config", None) or {}
    before = {name: c.rank_pattern for name, c in configs.items() if getattr(c, "rank_pattern", None)}
    try:
        for name, pattern in before.items():
            configs[name].rank_pattern = _widened(model, name, pattern)
        yield
    finally:
        for name, pattern in before.items():
            configs[name].rank_pattern = pattern


def _widened(model: torch.nn.Module, adapter: str, pattern: dict[str, Any]) -> dict[str, list[bool]]:
    inner = model.get_base_model()
    widened = {}
    for key, keep in pattern.items():
        keep = keep.view(-1).tolist() if isinstance(keep, torch.Tensor) else list(keep)
        module = inner.get_submodule(key.split(".lora_E")[0])
        nonzero = (module.lora_E[adapter].detach().view(-1) != 0).tolist()
        widened[key] = [bool(k) or z for k, z in zip(keep, nonzero, strict=True)]
    return widened


def run_command() -> str | None:
    """The command line of this run, as Hydra recorded its overrides (None outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    # unresolved, as Hydra saves them: `key=${oc.env:NAME}` must not turn into the secret it names
    overrides = [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]
    overrides = shareable(overrides)  # hydra.run.dir=/home/me/... is this machine's, not the recipe's
    return " ".join(["python train.py", *(shlex.quote(o) for o in overrides)])
