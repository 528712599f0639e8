"""glue-lora: LoRA fine-tuning of encoders on GLUE with Lightning, Hydra and peft."""

__version__ = "0.1.0"
