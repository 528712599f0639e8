"""Hydra plugins of glue-lora: the sweeper of hparams_search= (see search_sweeper)."""
