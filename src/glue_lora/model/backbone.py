"""Backbones and tokenizers: from a local directory, the bundled MiniLM, the Hub, or random weights.

Where the weights come from, in order: ``name_or_path`` (a local directory or Hub id the user
gave), the model package named by ``package`` (the pip-shipped all-MiniLM-L6-v2), then ``hub_id``.
``pretrained=false`` builds the architecture from ``architecture`` (the public config's shape
facts) with random weights; on the meta device it allocates nothing at all.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from glue_lora.model.layers import layer_index
from glue_lora.model.quantization import (
    RunDevice,
    check_quantization,
    quantize_random_model,
    quantized_loading_kwargs,
)
from glue_lora.utils.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_source(model_cfg: Mapping[str, Any]) -> str:
    """The directory or Hub id that weights and tokenizer are loaded from."""
    if model_cfg.get("name_or_path"):
        source = str(model_cfg["name_or_path"])
        looks_local = source.startswith((".", "/", "~")) or Path(source).expanduser().exists()
        if looks_local and not Path(source).expanduser().is_dir():
            raise ConfigError(
                f"model.name_or_path={source} is not a directory. Give a local model directory "
                "(with config.json and weights) or a Hub id such as roberta-base."
            )
        return str(Path(source).expanduser()) if looks_local else source
    package = model_cfg.get("package")
    if package:
        try:
            module = importlib.import_module(package)
            return str(module.get_model_path())
        except ImportError:
            log.info("Model package %s is not installed; using the Hub id.", package)
    return str(model_cfg["hub_id"])


@contextmanager
def loading(model_cfg: Mapping[str, Any], source: str, what: str = "model") -> Iterator[None]:
    """Turn transformers' OSError (no network, no such repo, missing files) into a ``ConfigError``."""
    try:
        yield
    except OSError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        name = model_cfg.get("name") or source
        raise ConfigError(
            f"Could not load the {what} of model={name} from {source} ({first}). Without network "
            f"access: download it once and give model.name_or_path=<local dir> (a directory with "
            "config.json and the weights), or set HF_HUB_OFFLINE=1 to use a copy in the Hugging Face "
            f"cache; or set model.pretrained=false for random weights of the same shape (tests, "
            "speed measurements)."
        ) from None


def build_config(model_cfg: Mapping[str, Any], num_labels: int, regression: bool) -> Any:
    """The transformers config: the pretrained one, or one built from ``architecture`` facts."""
    from transformers import AutoConfig

    head_kwargs: dict[str, Any] = {"num_labels": num_labels}
    if regression:
        head_kwargs["problem_type"] = "regression"
    if model_cfg.get("cls_dropout") is not None:
        head_kwargs.update(_cls_dropout_kwargs(model_cfg))
    if model_cfg.get("pretrained", True):
        source = resolve_source(model_cfg)
        with loading(model_cfg, source, "config"):
            return AutoConfig.from_pretrained(source, **head_kwargs)
    architecture = dict(model_cfg.get("architecture") or {})
    if "model_type" not in architecture:
        raise ConfigError(
            f"model={model_cfg.get('name')} with model.pretrained=false needs model.architecture "
            "with at least model_type and the layer shapes (see conf/model/roberta_base.yaml)."
        )
    model_type = architecture.pop("model_type")
    return AutoConfig.for_model(model_type, **architecture, **head_kwargs)


def _cls_dropout_kwargs(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    # DeBERTa-v2 reads `cls_dropout`, BERT/RoBERTa `classifier_dropout`: the dropout before the
    # classifier. DeBERTa's `pooler_dropout` stays the config's (0), as in the reference's run_glue.py,
    # which passes --cls_dropout to the config alone.
    value = float(model_cfg["cls_dropout"])
    return {"classifier_dropout": value, "cls_dropout": value}


def build_tokenizer(model_cfg: Mapping[str, Any], config: Any) -> Any:
    """The tokenizer of ``model.tokenizer`` if given, else of the weights' source."""
    from transformers import AutoTokenizer

    source = model_cfg.get("tokenizer") or resolve_source(model_cfg)
    # Passing the model config lets a bare vocab/merges directory resolve to the right class.
    with loading(model_cfg, str(source), "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(str(source), config=config)
    if getattr(config, "type_vocab_size", 2) < 2 and "token_type_ids" in tokenizer.model_input_names:
        # A model with one (or no) token type must not be fed segment ids it has no embedding for.
        tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
    return tokenizer


def build_backbone(
    model_cfg: Mapping[str, Any],
    num_labels: int,
    regression: bool = False,
    device: str | torch.device | None = None,
    run: RunDevice | None = None,
) -> Any:
    """An ``AutoModelForSequenceClassification`` with a fresh head of ``num_labels`` outputs
    (``run``: the precision and devices a 4-bit model is loaded for)."""
    from transformers import AutoModelForSequenceClassification

    config = build_config(model_cfg, num_labels, regression)
    dtype = _frozen_dtype(model_cfg)
    kwargs: dict[str, Any] = {"trust_remote_code": bool(model_cfg.get("trust_remote_code", False))}
    if model_cfg.get("attn_implementation"):
        kwargs["attn_implementation"] = model_cfg["attn_implementation"]
    run = run or RunDevice()
    quantized = check_quantization(model_cfg)
    if not model_cfg.get("pretrained", True):
        with torch.device(device or "cpu"):
            model = AutoModelForSequenceClassification.from_config(config, **kwargs)
        if quantized:
            model = quantize_random_model(model, run)
    else:
        source = resolve_source(model_cfg)
        log.info("Loading pretrained weights from %s", source)
        if quantized:
            kwargs.update(quantized_loading_kwargs(run))
        with loading(model_cfg, source, "weights"):
            model = AutoModelForSequenceClassification.from_pretrained(
                source, config=config, dtype=torch.float32, **kwargs
            )
    if dtype is not None and not quantized:
        model.to(dtype)
    if model_cfg.get("gradient_checkpointing"):
        # Non-reentrant checkpointing needs no input that requires grad, so frozen embeddings are fine.
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name warns)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if model_cfg.get("last_layer_cls_only"):
        last_layer_cls_only(model)
    if model_cfg.get("fast_dropout"):
        from glue_lora.model.fast_dropout import use_fast_dropout

        use_fast_dropout(model)
    # from_pretrained returns the model in eval mode; training must start with dropout on.
    return model.train()


def last_layer_cls_only(model: torch.nn.Module) -> torch.nn.Module:
    """Run the last layer's attention output and feed-forward block for the first position only.

    The classification heads of BERT, RoBERTa and DeBERTa-v2 read the first ([CLS]) position of the
    last layer and nothing else, so the other positions' attention output projection and FFN (about
    three quarters of a layer's matrix multiplies, in the forward and the backward pass) are wasted
    work. A pre-hook on the last ``attention.output`` cuts its inputs to that position; the logits
    are the same, the module tree and weight names are untouched. The last hidden state returned
    by the backbone then has length 1.
    """
    outputs = {
        index: module
        for name, module in model.named_modules()
        if name.endswith(".attention.output") and (index := layer_index(name)) is not None
    }
    if not outputs:
        raise ConfigError(
            f"model.last_layer_cls_only=true needs an encoder whose layers have `attention.output` "
            f"(BERT, RoBERTa, DeBERTa-v2); {type(model).__name__} has none. Set "
            "model.last_layer_cls_only=false."
        )
    outputs[max(outputs)].register_forward_pre_hook(_first_position)
    return model


def _first_position(module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a[:, :1] if isinstance(a, torch.Tensor) and a.dim() == 3 else a for a in args)


def maybe_compile(model: torch.nn.Module, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
    """With ``model.compile=true``, compile the model in place (state-dict keys stay unchanged).

    Shapes are specialised first and made dynamic on the first recompile (torch's default), so
    length-grouped batches of varying sequence length do not each trigger a compilation.
    """
    if model_cfg.get("compile"):
        model.compile()
    return model


def _frozen_dtype(model_cfg: Mapping[str, Any]) -> torch.dtype | None:
    name = model_cfg.get("frozen_dtype")
    if name in (None, "float32", "fp32"):
        return None
    dtypes = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in dtypes:
        raise ConfigError(
            f"model.frozen_dtype={name} is not supported. Use one of float32, bfloat16, float16."
        )
    return dtypes[name]


def check_vocabulary(model: Any, tokenizer: Any) -> None:
    """Fail early when the tokenizer produces ids the model's embedding table does not have."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        raise ConfigError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's embedding table has "
            f"{embeddings}: they belong to different models. Set model.tokenizer to the "
            "tokenizer of the model's checkpoint (or leave it null to use the checkpoint's own)."
        )


def max_positions(model: torch.nn.Module) -> int | None:
    """The longest input the model's absolute position embeddings allow; None if it has none.

    RoBERTa numbers positions from ``padding_idx + 1`` (its position table has a padding row), so
    roberta-base's 514 positions hold 512 tokens. DeBERTa-v2 with relative positions only
    (``position_biased_input=false``) has no such table and no limit.
    """
    for module in model.modules():
        table = getattr(module, "position_embeddings", None)
        if isinstance(table, torch.nn.Embedding):
            offset = table.padding_idx + 1 if table.padding_idx is not None else 0
            return table.num_embeddings - offset
    return None


def check_max_length(model: torch.nn.Module, max_length: int, model_name: str | None = None) -> None:
    """Refuse a ``data.max_length`` beyond the model's positions (it would fail at the first long example)."""
    limit = max_positions(model)
    if limit is not None and max_length > limit:
        raise ConfigError(
            f"data.max_length={max_length} exceeds what model={model_name or type(model).__name__} can "
            f"read: its position embeddings hold {limit} tokens. Set data.max_length={limit} or less "
            "(longer examples are truncated to it)."
        )
