"""ThroughputMeter's peak memory: the device's, read inside fit and maxed over ranks, and the host's."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from glue_lora.training.callbacks import ThroughputMeter
from glue_lora.utils.memory import MB
from glue_lora.utils.run_files import training_peak_mb


class FakeStrategy:
    """One rank's view of a max all-reduce: the other ranks' figures are ``others``."""

    root_device = torch.device("cpu")

    def __init__(self, others: list[list[float]]) -> None:
        self.others = others
        self.calls = 0

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "max"
        self.calls += 1
        return torch.stack([tensor, *(torch.tensor(o) for o in self.others)]).amax(0)


def test_the_device_peak_is_read_before_teardown_and_maxed_over_ranks(monkeypatch):
    allocated = {"cuda:0": 3000 * MB}
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: allocated[str(device)])
    monkeypatch.setattr("glue_lora.training.callbacks.host_peak_mb", lambda: 900.0)
    strategy = FakeStrategy(others=[[5000.0, 700.0], [4000.0, 1200.0]])  # ranks 1 and 2
    meter = ThroughputMeter()
    meter.on_train_end(SimpleNamespace(strategy=strategy), SimpleNamespace(device=torch.device("cuda:0")))
    allocated["cuda:0"] = 0  # after fit: the module is back on the CPU, the device reads nothing
    train = meter.summary(torch.device("cpu"))
    assert strategy.calls == 1  # one collective for the run
    assert train["peak_device_memory_mb"] == 5000.0  # rank 1's device
    assert train["peak_host_memory_mb"] == 1200.0  # rank 2's process
    assert train["peak_memory_mb"] == 5000.0  # the old key: the device's on a GPU
    assert training_peak_mb(train) == 5000.0


def test_a_cpu_run_records_the_host_peak_only(monkeypatch):
    monkeypatch.setattr("glue_lora.training.callbacks.host_peak_mb", lambda: 800.0)
    meter = ThroughputMeter()
    cpu = SimpleNamespace(device=torch.device("cpu"))
    meter.on_train_end(SimpleNamespace(strategy=FakeStrategy([])), cpu)
    train = meter.summary()
    assert train["peak_device_memory_mb"] is None
    assert train["peak_host_memory_mb"] == train["peak_memory_mb"] == 800.0


def test_records_before_the_split_are_still_read():
    assert training_peak_mb({"peak_memory_mb": 42.0}) == 42.0
    assert training_peak_mb({"peak_device_memory_mb": None, "peak_host_memory_mb": 7.0}) == 7.0
    assert training_peak_mb({}) is None
