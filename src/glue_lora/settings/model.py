"""The ``model`` config group, resolved once per run: what the builders and records read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf


@dataclass(frozen=True)
class ModelSettings:
    """The resolved ``model`` group. ``config`` is the plain dict that the backbone and tokenizer
    builders and glue_lora.json read; the properties name the settings the run itself uses."""

    config: dict[str, Any]

    @classmethod
    def from_config(cls, model_node: Any) -> ModelSettings:
        return cls(OmegaConf.to_container(model_node, resolve=True))

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def lora_targets(self) -> list[str]:
        return list(self.config["lora_targets"])

    @property
    def trained_in_full(self) -> list[str]:
        return list(self.config["trained_in_full"])

    @property
    def pretrained(self) -> bool:
        return bool(self.config.get("pretrained", True))

    def on_meta_device(self) -> ModelSettings:
        """For a build on the meta device: from the shapes of ``architecture`` where the file has them."""
        if self.config.get("architecture") is None:
            return self
        return ModelSettings({**self.config, "pretrained": False})

    def source(self) -> str:
        """Where the base weights are read (``random:<name>`` for ``model.pretrained=false``)."""
        from glue_lora.model.backbone import resolve_source

        return resolve_source(self.config) if self.pretrained else f"random:{self.name}"

    def shareable_source(self) -> str:
        """``source()`` as shared files record it: a bundled package by name and version, a local
        directory relative to a named root (``utils.shareable``), a Hub id as it is."""
        from glue_lora.utils.shareable import is_path_like, package_source, shareable_path

        if self.pretrained and not self.config.get("name_or_path") and self.config.get("package"):
            source = self.source()
            if source != str(self.config.get("hub_id")):  # the package is installed
                return package_source(str(self.config["package"]))
        source = self.source()
        return shareable_path(source) if is_path_like(source) else source
