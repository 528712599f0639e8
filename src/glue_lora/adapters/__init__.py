"""Saved adapters: the record, MNLI initialisation, merging, loralib import, the Predictor, cards, push."""
