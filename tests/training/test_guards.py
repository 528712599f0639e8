"""NonFiniteLossGuard: no host sync or collective per micro-batch; one check at each boundary where
the run would write or report, with the same decision on every rank."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from glue_lora.training.guards import NonFiniteLossGuard
from glue_lora.utils.errors import TrainingError


class FakeStrategy:
    """Counts the guard's collectives; ``other_rank_bad`` marks micro-batches bad on another rank."""

    root_device = torch.device("cpu")

    def __init__(self, other_rank_bad: set[int] = frozenset()) -> None:
        self.reductions = 0
        self.other_rank_bad = other_rank_bad

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "max"
        self.reductions += 1
        other = torch.tensor([float(i in self.other_rank_bad) for i in range(len(tensor))])
        return torch.maximum(tensor, other)


def fake_trainer(strategy: FakeStrategy, log_every: int = 20) -> SimpleNamespace:
    optimizer = SimpleNamespace(param_groups=[{"lr": 1e-3}, {"lr": 2e-4}])
    return SimpleNamespace(
        strategy=strategy,
        optimizers=[optimizer],
        global_step=0,
        current_epoch=0,
        log_every_n_steps=log_every,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_idx=0)),
    )


def train_steps(guard, trainer, losses, first_step=0):
    """One micro-batch per optimizer step, as Lightning calls the guard's hooks."""
    for i, loss in enumerate(losses):
        trainer.global_step = first_step + i
        trainer.fit_loop.epoch_loop.batch_idx = first_step + i
        guard.on_before_backward(trainer, None, torch.tensor(loss))
        trainer.global_step += 1  # the optimizer step
        guard.on_train_batch_end(trainer, None, None, None, first_step + i)


def test_micro_batches_between_boundaries_cost_no_collective():
    strategy = FakeStrategy()
    trainer, guard = fake_trainer(strategy), NonFiniteLossGuard()
    train_steps(guard, trainer, [0.7] * 19)
    assert strategy.reductions == 0  # 19 steps: no sync, no all-reduce
    train_steps(guard, trainer, [0.7], first_step=19)
    assert strategy.reductions == 1  # step 20: log_every_n_steps, one check of all 20 losses
    guard.on_validation_start(trainer, None)
    assert strategy.reductions == 1  # nothing new since: nothing to check


def test_a_non_finite_loss_stops_the_run_before_the_next_checkpoint_is_written():
    strategy = FakeStrategy()
    trainer, guard = fake_trainer(strategy), NonFiniteLossGuard()
    train_steps(guard, trainer, [0.7, 0.6, 0.5, float("nan"), 0.4])
    with pytest.raises(
        TrainingError, match=r"loss is nan at step 3 \(epoch 0, batch 3\), learning rate 0\.001\."
    ) as err:
        guard.on_save_checkpoint(trainer, None, {})  # before Lightning writes the file
    assert "Training stopped at step 5, before anything was written after that loss" in str(err.value)


def test_every_rank_stops_when_one_rank_sees_a_non_finite_loss():
    strategy = FakeStrategy(other_rank_bad={2})
    trainer, guard = fake_trainer(strategy), NonFiniteLossGuard()
    train_steps(guard, trainer, [0.7, 0.6, 0.5])  # finite here
    with pytest.raises(TrainingError, match=r"not finite on another rank at step 2 \(epoch 0, batch 2\)"):
        guard.on_validation_start(trainer, None)


def test_an_infinite_loss_is_caught_at_the_end_of_training():
    trainer, guard = fake_trainer(FakeStrategy()), NonFiniteLossGuard()
    train_steps(guard, trainer, [0.7, float("inf")])
    with pytest.raises(TrainingError, match=r"loss is inf at step 1"):
        guard.on_train_end(trainer, None)


def test_checking_every_step_stops_before_the_optimizer_step_after_a_non_finite_loss():
    strategy = FakeStrategy()
    trainer, guard = fake_trainer(strategy), NonFiniteLossGuard(check_every_n_steps=1)
    guard.on_before_backward(trainer, None, torch.tensor(0.7))
    guard.on_before_optimizer_step(trainer, None, None)
    assert strategy.reductions == 1  # one look per step
    guard.on_before_backward(trainer, None, torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match=r"loss is nan at step 0"):
        guard.on_before_optimizer_step(trainer, None, None)  # the step is never taken
