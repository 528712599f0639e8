"""Reading finished runs: sweep summaries against the paper, report plots, LoRA-vs-full studies."""
