"""glue-lora: LoRA fine-tuning of encoders on GLUE with Lightning, Hydra and peft."""

from glue_lora.settings.resolvers import register as _register_config_resolvers

__version__ = "0.1.0"

_register_config_resolvers()

__all__ = ["Prediction", "Predictor"]


def __getattr__(name: str):
    # `glue_lora.Predictor` without importing torch and transformers on `import glue_lora`.
    if name in __all__:
        from glue_lora.adapters import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'glue_lora' has no attribute {name!r}")
