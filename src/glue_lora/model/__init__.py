"""The network: backbone and tokenizer sources, LoRA injection, fused LoRA, fast dropout."""
