"""Hyperparameter search on Optuna (``train.py -m hparams_search=<name>``): the sweeper, its
pruning callback and the sweep directory's record of the trials (docs/search.md)."""
