"""Model cards: the README.md of an adapter (and of a merged model) in the Hugging Face format.

YAML front matter (``base_model``, ``library_name``, ``tags``, ``datasets``, ``metrics`` and the
dev results in the ``model-index`` form) followed by markdown sections: what it is, the dev
metrics, how to load it, and how it was trained (command, recipe, hyperparameters, parameter
counts, training time). Pushed to the Hub (`glue-lora push`), the directory shows a proper page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from glue_lora.data.tasks import TaskSpec
from glue_lora.utils.shareable import is_path_like, shareable_path

CARD = "README.md"
# Our metric names -> the `evaluate` metric ids the Hub's model-index uses.
METRIC_TYPES = {
    "accuracy": "accuracy",
    "f1": "f1",
    "mcc": "matthews_correlation",
    "pearson": "pearsonr",
    "spearman": "spearmanr",
}
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def is_local_path(source: str | None) -> bool:
    return bool(source) and (source.startswith((".", "/", "~", "<")) or Path(source).expanduser().exists())


def shareable_base(model_cfg: Mapping[str, Any]) -> str | None:
    """The base model named in a shared adapter: a Hub id wherever the weights were a copy of one.

    The bundled MiniLM is loaded from an installed package's directory, a path that exists on this
    machine only; it is a copy of ``hub_id``, so that is what another machine can load. A directory
    the user gave (``model.name_or_path``) stays as given; random weights name nothing.
    """
    if not model_cfg.get("pretrained", True):
        return None
    if model_cfg.get("name_or_path"):
        source = str(model_cfg["name_or_path"])
        return shareable_path(source) if is_path_like(source) else source
    return str(model_cfg["hub_id"]) if model_cfg.get("hub_id") else None


def hub_base(model_cfg: Mapping[str, Any]) -> str | None:
    """The Hub id for a card's ``base_model``: a local directory falls back to the model's Hub id."""
    if not model_cfg.get("pretrained", True):
        return None
    base = shareable_base(model_cfg)
    return base if base and not is_local_path(base) else model_cfg.get("hub_id")


def _model_index(name: str, spec: TaskSpec, results: Mapping[str, Any]) -> list[dict[str, Any]]:
    metrics = []
    for key, label in (("dev", "dev"), *((k, k.replace("_", " ")) for k in results if k.startswith("dev_"))):
        for metric, value in (results.get(key) or {}).items():
            if isinstance(value, int | float):
                metrics.append(
                    {
                        "type": METRIC_TYPES.get(metric, metric),
                        "value": round(float(value), 4),
                        "name": f"{label} {metric}",
                    }
                )
    dataset = {"name": f"GLUE {spec.directory}" if spec.hub_name else spec.name, "type": spec.hub_path}
    if spec.hub_name:
        dataset["config"] = spec.hub_name
    dataset["split"] = spec.hub_splits.get("dev", "validation")
    return [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": dataset,
                    "metrics": metrics,
                }
            ],
        }
    ]


def render(front: Mapping[str, Any], sections: Mapping[str, str]) -> str:
    """A card from its front matter and ``heading -> markdown`` sections (the first is the title)."""
    head = yaml.safe_dump(dict(front), sort_keys=False, allow_unicode=True).strip()
    body = "\n\n".join(
        f"{'#' if i == 0 else '##'} {title}\n\n{text.strip()}"
        for i, (title, text) in enumerate(sections.items())
    )
    return f"---\n{head}\n---\n\n{body}\n"


def parse(text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The front matter and the sections of a card written by ``render``."""
    match = _FRONT_MATTER.match(text)
    front = (yaml.safe_load(match.group(1)) or {}) if match else {}
    body = text[match.end() :] if match else text
    sections: dict[str, str] = {}
    for chunk in re.split(r"^#{1,2} ", body, flags=re.MULTILINE)[1:]:
        title, _, rest = chunk.partition("\n")
        sections[title.strip()] = rest.strip()
    return front, sections


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("setting", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def adapter_card(
    cfg: Mapping[str, Any], spec: TaskSpec, results: Mapping[str, Any], command: str | None = None
) -> str:
    """The README.md of a training run's ``adapter/``, from its resolved config and results.json."""
    model_cfg = cfg["model"]
    lora = results.get("lora")
    method = results.get("method") or {
        "name": "lora" if lora else "full",
        "trains": "adapter" if lora else "all",
    }
    peft = method.get("trains") == "adapter"
    kind = "lora" if method["name"] == "lora" else method["name"]
    base = hub_base(model_cfg)
    name = f"{model_cfg['name']}-{spec.name}-{kind}"
    tags = ["glue-lora", "text-classification", "glue" if spec.hub_name else spec.name, spec.name]
    front: dict[str, Any] = {}
    if base:
        front["base_model"] = base
    front["library_name"] = "peft" if peft else "transformers"
    method_tags = [kind, "peft"] if peft else (["full-fine-tuning"] if kind == "full" else [kind])
    front["tags"] = list(dict.fromkeys([*method_tags, *tags]))
    front["datasets"] = [spec.hub_path]
    front["metrics"] = list(dict.fromkeys(METRIC_TYPES.get(m, m) for m in (results.get("dev") or {})))
    front["model-index"] = _model_index(name, spec, results)

    if lora and peft:
        label = "LoRA" if kind == "lora" else f"{kind} (LoRA family)"
        what = (
            f"{label} adapter (r={lora['r']}, alpha={lora['alpha']}, on {', '.join(lora['targets'])}) and "
            "classification head"
        )
    elif peft:
        what = f"{kind} adapter (peft {method.get('peft_type')}) and classification head"
    elif kind == "full":
        what = "Fully fine-tuned model"
    else:
        what = f"The weights {kind} trained ({method.get('trains')}), to load onto the base with glue-lora"
    source = results.get("model_name_or_path")
    origin = f"`{base}`" if base else f"model={model_cfg['name']}"
    if str(source or "").startswith("random:"):
        origin += " with randomly initialised weights (model.pretrained=false): for tests, not for use"
    labels = ", ".join(spec.label_names) if spec.label_names else "a similarity score (regression)"
    dev_rows = [(f"dev {metric}", f"{value:.4f}") for metric, value in (results.get("dev") or {}).items()]
    for key in (k for k in results if k.startswith("dev_")):
        dev_rows += [(f"{key.replace('_', ' ')} {m}", f"{v:.4f}") for m, v in results[key].items()]
    best = results.get("best") or {}
    trainer, data, optimizer, schedule = cfg["trainer"], cfg["data"], cfg["optimizer"], cfg["schedule"]
    settings = [
        ("recipe", f"`conf/recipe/{cfg['recipe']}.yaml`" if cfg.get("recipe") else "generic defaults"),
        ("learning rate", optimizer.get("lr")),
        ("optimizer", str(optimizer.get("_target_", "")).rsplit(".", 1)[-1]),
        ("weight decay", optimizer.get("weight_decay")),
        ("schedule", f"{schedule.get('name')}, warm-up ratio {schedule.get('warmup_ratio')}"),
        ("batch size per device", data.get("batch_size")),
        ("epochs / max steps", f"{trainer.get('max_epochs')} / {trainer.get('max_steps')}"),
        ("max length", data.get("max_length")),
        ("precision", trainer.get("precision")),
        ("seed", cfg.get("seed")),
    ]
    if lora:
        settings += [(f"lora.{k}", v) for k, v in lora.items() if v is not None]
    params, train = results.get("params") or {}, results.get("train") or {}
    counts = [(k, f"{v:,}") for k, v in params.items()]
    timing = [
        ("training time", f"{train['seconds']:.1f} s" if "seconds" in train else "?"),
        ("samples/s", train.get("samples_per_second", "?")),
    ]
    load_base = f'"{base}"' if base else '"<base model>"'
    use = (
        "```python\nfrom peft import AutoPeftModelForSequenceClassification\nfrom transformers import "
        "AutoTokenizer\n\nmodel = AutoPeftModelForSequenceClassification.from_pretrained(\n"
        f'    "<this repo or directory>", num_labels={spec.num_labels}\n)\n'
        f"tokenizer = AutoTokenizer.from_pretrained({load_base})\n```"
        if lora
        else "```python\nfrom transformers import AutoModelForSequenceClassification\n\nmodel = "
        'AutoModelForSequenceClassification.from_pretrained("<this repo or directory>")\n```'
    )
    sections = {
        f"{name}": f"{what} for {origin}, trained on {spec.name} with "
        f"glue-lora (PyTorch Lightning + Hydra + peft). Labels: {labels}.",
        "Dev results": _table(dev_rows, ("metric", "value"))
        + f"\n\nBest evaluation at epoch {best.get('epoch')}, step {best.get('step')}.",
        "Use": use + "\n\nWith glue-lora: `python eval.py adapter=<directory>` or `glue_lora.Predictor(None, "
        f'adapters={{"{spec.name}": "<directory>"}})`.',
        "Training": f"Command: `{command or '(composed in code)'}`\n\n" + _table(settings),
        "Parameters and time": _table(counts + timing, ("", "")),
    }
    return render(front, sections)


def merged_card(adapter_card_text: str | None, task: str, base: str | None, source: str) -> str:
    """The README.md of ``glue-lora merge``'s output: the adapter's card, as a plain transformers model."""
    front, sections = parse(adapter_card_text) if adapter_card_text else ({}, {})
    if base and "base_model" not in front:
        front["base_model"] = base
    front["library_name"] = "transformers"
    front["tags"] = list(dict.fromkeys([*(front.get("tags") or ["glue-lora", task]), "merged-lora"]))
    title = next(iter(sections), f"{task} (merged LoRA)")
    rest = {k: v for k, v in list(sections.items())[1:] if k != "Use"}
    merged = {
        f"{title} (merged)": f"The LoRA adapter at `{source}` folded into its base weights "
        "(`glue-lora merge`): a plain transformers model, no peft needed, at the base model's speed.",
        "Use": "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        'model = AutoModelForSequenceClassification.from_pretrained("<this repo or directory>")\n'
        'tokenizer = AutoTokenizer.from_pretrained("<this repo or directory>")\n```',
        **rest,
    }
    return render(front, merged)
