"""Helpers shared by the tests: composing and running train.py, GLUE-layout files, adapters, callbacks."""
