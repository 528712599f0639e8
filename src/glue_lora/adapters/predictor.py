"""Serving several tasks from one base model: ``Predictor(base, adapters={"sst2": dir, "rte": dir})``.

The base weights are loaded once. Each adapter (LoRA, rsLoRA, DoRA, LoRA+, LoRA-FA) adds its LoRA
matrices (a named peft adapter on the shared base layers) and its own head modules (classifier,
DeBERTa's pooler), built for its label count. ``predict(task, texts)`` activates that task's LoRA
and head, then runs the base model's own forward. Switching costs nothing but the swap of a few
module references; it is not thread-safe (use one Predictor per thread, or a lock).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from glue_lora.adapters.loading import build_base, build_tokenizer_for, head_module_of, load_weights
from glue_lora.adapters.record import PEFT_PREFIX, AdapterInfo, read_adapter
from glue_lora.settings.method import MethodSettings
from glue_lora.utils.errors import ConfigError, DataError

# The fields of a model config that decide the base weights (head settings such as cls_dropout don't).
BASE_FIELDS = ("name", "hub_id", "package", "name_or_path", "pretrained", "architecture", "frozen_dtype")

Texts = str | Sequence[str] | Sequence[Sequence[str]]

# peft options of the LoRA methods a Predictor serves: their update sits beside the shared base
# weights. PiSSA and OLoRA change the base weights themselves; AdaLoRA, VeRA, (IA)^3 and FourierFT are
# other peft types; BitFit changes the base's biases.
SERVED_OPTIONS = frozenset({"use_dora", "use_rslora"})
SERVED = "LoRA, rsLoRA, DoRA, LoRA+ and LoRA-FA"


def servable(method: MethodSettings) -> bool:
    """Whether a Predictor can serve an adapter of ``method`` beside others on one base."""
    return method.peft_type == "lora" and set(method.peft_options) <= SERVED_OPTIONS


@dataclass(frozen=True)
class Prediction:
    """One prediction: the label name (regression: the score), its probability, and all probabilities."""

    label: str | float
    score: float
    scores: dict[str, float]


def _base_identity(info: AdapterInfo, base: str | None) -> str:
    fields = {k: info.model.get(k) for k in BASE_FIELDS}
    if base is not None:
        fields.update(name_or_path=str(base), pretrained=True, hub_id=None, package=None)
    if not fields["pretrained"]:
        fields["seed"] = info.seed  # a random base is a function of the seed
    return json.dumps(fields, sort_keys=True)


class Predictor:
    """One base model, several task adapters; ``predict(task, texts)`` returns labels with scores."""

    def __init__(
        self,
        base: str | None = None,
        adapters: Mapping[str, str | Path] | None = None,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        """``base``: a local directory or Hub id of the base weights, or None for the one the adapters
        record. ``adapters``: task name -> run or adapter directory, all trained on that base."""
        from peft import get_peft_model

        if not adapters:
            raise ConfigError("Predictor needs at least one adapter: adapters={'sst2': '<run dir>', ...}.")
        self.infos: dict[str, AdapterInfo] = {name: read_adapter(path) for name, path in adapters.items()}
        identities = {name: _base_identity(info, base) for name, info in self.infos.items()}
        first_name, first = next(iter(self.infos.items()))
        for name, info in self.infos.items():
            if info.method.is_full:
                raise ConfigError(
                    f"The adapter {name!r} ({info.path}) is a full model, not LoRA: it cannot share a "
                    "base. Load it alone with AutoModelForSequenceClassification.from_pretrained."
                )
            if not servable(info.method):
                raise ConfigError(
                    f"The adapter {name!r} ({info.path}) was trained with method={info.method.name}, "
                    f"which a Predictor cannot serve: it serves {SERVED} adapters, which add their "
                    "update beside the shared base weights. Load it alone with "
                    "glue_lora.adapters.loading.load_model (or eval.py)."
                )
            if identities[name] != identities[first_name]:
                raise ConfigError(
                    f"The adapters {first_name!r} and {name!r} were trained on different base models "
                    f"({first.model.get('name')} vs {info.model.get('name')}, or other weights): one "
                    "Predictor serves adapters of one base. Use one Predictor per base model."
                )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        base_model = build_base(first, base)
        self.tokenizer = build_tokenizer_for(first, base_model.config, base)
        self.heads = nn.ModuleDict()
        self.model = None
        for name, info in self.infos.items():
            weights = load_weights(info.path)
            lora_config = self._lora_config(info)
            if self.model is None:
                self.model = get_peft_model(base_model, lora_config, adapter_name=name)
            else:
                self.model.add_adapter(name, lora_config)
            self._load_lora(name, info, weights)
            self.heads[name] = self._build_heads(info, weights, base_model.config)
        self.model.eval().to(self.device)
        self.heads.eval().to(self.device)
        self.active: str | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.infos)

    @staticmethod
    def _lora_config(info: AdapterInfo):
        from glue_lora.model.lora import lora_peft_config

        targets = info.lora.get("targets") or info.model["lora_targets"]
        config = lora_peft_config(info.lora, targets, modules_to_save=[], **info.method.peft_options)
        # A plain PeftModel: heads are ours to switch (SEQ_CLS would wrap one shared classifier).
        config.task_type = None
        config.modules_to_save = None
        config.inference_mode = True
        return config

    def _load_lora(self, name: str, info: AdapterInfo, weights: Mapping[str, torch.Tensor]) -> None:
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        heads = list(info.head_modules)
        lora = {k: v for k, v in weights.items() if head_module_of(k, heads) is None}
        expected = get_peft_model_state_dict(self.model, adapter_name=name)
        if set(lora) != set(expected) or any(lora[k].shape != expected[k].shape for k in expected):
            raise DataError(
                f"The LoRA weights of {info.path} do not fit the LoRA config its glue_lora.json "
                "records; use the adapter directory exactly as train.py wrote it."
            )
        set_peft_model_state_dict(self.model, lora, adapter_name=name)

    @staticmethod
    def _build_heads(info: AdapterInfo, weights: Mapping[str, torch.Tensor], base_config) -> nn.ModuleDict:
        """The adapter's head modules, built by the model class itself for the adapter's label count."""
        from transformers import AutoModelForSequenceClassification

        config = copy.deepcopy(base_config)
        config.num_labels = info.num_labels
        config.problem_type = "regression" if info.label_names is None else None
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(config)
        by_module: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in weights.items():
            path = head_module_of(key, info.head_modules)
            if path is not None:
                local = key.removeprefix(PEFT_PREFIX).removeprefix(path + ".")
                by_module.setdefault(path, {})[local] = tensor
        heads = nn.ModuleDict()
        for path, state in by_module.items():
            module = skeleton.get_submodule(path).to_empty(device="cpu")
            module.load_state_dict(state, strict=True)
            heads[path.replace(".", "__")] = module
        return heads

    def _check(self, task: str) -> None:
        if task not in self.infos:
            raise ConfigError(f"No adapter for task {task!r}; this Predictor serves {self.tasks}.")

    def _activate(self, task: str) -> None:
        if task == self.active:
            return
        self.model.set_adapter(task)
        inner = self.model.get_base_model()
        for key, module in self.heads[task].items():
            inner.set_submodule(key.replace("__", "."), module)
        self.active = task

    def _columns(self, task: str, texts: Texts) -> list[list[str]]:
        n_columns = len(self.infos[task].spec.text_columns)
        items = [texts] if isinstance(texts, str) else list(texts)
        rows = [[item] if isinstance(item, str) else list(item) for item in items]
        bad = [row for row in rows if len(row) != n_columns]
        if bad:
            kind = "a (first, second) pair of texts" if n_columns == 2 else "a single text"
            raise ConfigError(f"Task {task} reads {kind} per example; got {bad[0]!r}.")
        return [list(col) for col in zip(*rows, strict=True)]

    @torch.inference_mode()
    def logits(self, task: str, texts: Texts) -> torch.Tensor:
        """The task head's raw outputs for ``texts`` (a text, texts, or (text, text) pairs)."""
        self._check(task)
        columns = self._columns(task, texts)
        self._activate(task)
        max_length = self.infos[task].max_length
        out = []
        for start in range(0, len(columns[0]), self.batch_size):
            chunk = [col[start : start + self.batch_size] for col in columns]
            encoded = self.tokenizer(
                *chunk, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            ).to(self.device)
            out.append(self.model(**encoded).logits.float().cpu())
        return torch.cat(out)

    def predict(self, task: str, texts: Texts) -> list[Prediction]:
        """Labels with scores for ``texts`` under the adapter of ``task``."""
        logits = self.logits(task, texts)
        names = self.infos[task].label_names
        if names is None:
            return [Prediction(label=float(v), score=float(v), scores={}) for v in logits.squeeze(-1)]
        probs = logits.softmax(dim=-1)
        result = []
        for row in probs:
            best = int(row.argmax())
            scores = {name: float(p) for name, p in zip(names, row, strict=True)}
            result.append(Prediction(label=names[best], score=float(row[best]), scores=scores))
        return result
