"""Hydra plugins of glue-lora: the sweeper of hparams_search= (see search_sweeper)."""

import logging

# Hydra imports every plugin module at start, hydra-optuna-sweeper's too, which imports optuna and
# alembic; alembic logs a line per plugin it sets up. Hydra scans this package first (by name).
logging.getLogger("alembic").setLevel(logging.WARNING)
