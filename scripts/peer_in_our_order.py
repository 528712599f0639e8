"""A diagnostic: the peer (transformers ``Trainer`` + peft, ``variant=peer_lora``) fed glue-lora's
batches in glue-lora's order, epoch by epoch, instead of ``Trainer``'s own sampler. Takes train.py's
arguments and writes results.json as a peer run does:

    GLUE_DIR=... python scripts/peer_in_our_order.py task=stsb variant=peer_lora seed=0

It showed that the peer's STS-B failure in the results table is its sampler's order, not its loop
(docs/results/minilm.md): the same cell scores 84.4 in our order, 24.2 in Trainer's length-grouped one.
"""

import runpy
import sys
from pathlib import Path

import torch
from transformers import Trainer

import glue_lora.bench.peer_train as peer_train

ROOT = Path(__file__).resolve().parents[1]
_configs = []  # the run's config, kept by the wrapper below for the loader


def our_batches(self: Trainer) -> torch.utils.data.DataLoader:
    from glue_lora.data.collate import model_inputs
    from glue_lora.data.datamodule import datamodule_from_settings
    from glue_lora.data.tasks import get_task
    from glue_lora.settings.data import DataSettings

    cfg = _configs[-1]
    data = DataSettings.for_training(cfg.data, cfg.task, cfg.seed)
    datamodule = datamodule_from_settings(data, get_task(cfg.task.name), self.processing_class)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batches = []
    for epoch in range(int(cfg.trainer.max_epochs)):
        loader.batch_sampler.set_epoch(epoch)  # as Lightning does at each epoch's start
        batches += [model_inputs(batch) for batch in loader]
    return torch.utils.data.DataLoader(batches, batch_size=None)


def run_keeping_config(cfg):
    _configs.append(cfg)
    return _peer_run(cfg)


_peer_run = peer_train.run
peer_train.run = run_keeping_config
Trainer.get_train_dataloader = our_batches
sys.argv[0] = str(ROOT / "train.py")
runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
