"""Helpers with no knowledge of the rest of the package: errors, atomic writes, redaction, memory,
disk space, warnings, the Hub probe. They import nothing of glue_lora outside utils."""
