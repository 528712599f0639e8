"""AdaLoRA's rank schedule in a real run (AdaLoraSchedule): the budget shrinks to target_r on
average only because the callback calls update_and_allocate; its steps follow the run; bad tinit /
tfinal are refused; its state goes into checkpoints for resume."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch

from glue_lora.train import run
from glue_lora.training.adalora import AdaLoraSchedule, set_schedule
from glue_lora.training.checkpointing import load_checkpoint
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import TINY, compose_train

INIT_R, TARGET_R = 4, 2


class RecordRanks:
    """A callback for train.run: AdaLoRA's config and each module's rank at the end of training."""

    seen: ClassVar[dict] = {}

    def __new__(cls):
        import lightning as L

        class _Record(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                # Before the schedule acts at step 4 (it comes later): its state after step 3, within
                # the budget's descent (steps 3-4 of 6).
                if trainer.global_step == 4:
                    (schedule,) = [c for c in trainer.callbacks if isinstance(c, AdaLoraSchedule)]
                    RecordRanks.seen["mid_state"] = schedule.state_dict()

            def on_train_end(self, trainer, pl_module):
                tuner = pl_module.model.base_model
                config = tuner.peft_config["default"]
                RecordRanks.seen.update(
                    steps=trainer.global_step,
                    total_step=config.total_step,
                    tinit=config.tinit,
                    tfinal=config.tfinal,
                    rank_pattern=config.rank_pattern,
                    ranks={
                        n: int((p != 0).sum()) for n, p in tuner.model.named_parameters() if ".lora_E." in n
                    },
                )

        return _Record()


def adalora_run(glue_fixtures, token_cache, tmp_path, overrides: list[str] = ()) -> dict:
    RecordRanks.seen.clear()
    cfg = compose_train(
        [
            *TINY,
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "method=adalora",
            f"lora.r={TARGET_R}",
            f"method.peft_options.init_r={INIT_R}",
            "method.peft_options.tinit=0.2",
            "method.peft_options.tfinal=0.2",
            "method.peft_options.deltaT=1",
            "optimizer.lr=1e-2",
            f"+callbacks.record._target_={__name__}.RecordRanks",
            *overrides,
        ],
        tmp_path,
    )
    return run(cfg)


def test_the_schedule_shrinks_the_rank_budget_to_target_r(glue_fixtures, token_cache, tmp_path):
    adalora_run(glue_fixtures, token_cache, tmp_path)
    seen = RecordRanks.seen
    steps = seen["steps"]
    assert steps >= 8 and seen["total_step"] == steps  # the run's steps, not the stand-in
    assert (seen["tinit"], seen["tfinal"]) == (-(-steps // 5), -(-steps // 5))  # 0.2 of them, rounded up
    ranks = seen["ranks"]
    assert len(ranks) == 4  # query and value in 2 layers
    assert sum(ranks.values()) == TARGET_R * len(ranks) < INIT_R * len(ranks)
    assert seen["rank_pattern"] and {n: sum(v) for n, v in seen["rank_pattern"].items()} == ranks


def test_without_the_callback_every_rank_stays_init_r(glue_fixtures, token_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(AdaLoraSchedule, "on_train_batch_end", lambda *args, **kwargs: None)
    adalora_run(glue_fixtures, token_cache, tmp_path)
    assert RecordRanks.seen["rank_pattern"] is None
    assert set(RecordRanks.seen["ranks"].values()) == {INIT_R}


def test_the_schedule_state_is_checkpointed_and_restored(glue_fixtures, token_cache, tmp_path):
    adalora_run(glue_fixtures, token_cache, tmp_path, ["trainer.max_epochs=1"])
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["callbacks"]["AdaLoraSchedule"]
    assert last["rank_pattern"] == RecordRanks.seen["rank_pattern"]
    # Mid-schedule, the importance averages are there too, and load as a checkpoint does.
    torch.save(RecordRanks.seen["mid_state"], tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["ipt"] and set(state["ipt"]) == set(state["exp_avg_ipt"]) == set(state["exp_avg_unc"])
    assert state["rank_pattern"]

    allocator = SimpleNamespace(ipt={}, exp_avg_ipt={}, exp_avg_unc={})
    config = SimpleNamespace(rank_pattern=None)
    tuner = SimpleNamespace(
        rankallocator=allocator,
        peft_config={"default": config},
        trainable_adapter_name="default",
        model=torch.nn.Linear(1, 1),
    )
    schedule = AdaLoraSchedule()
    schedule.load_state_dict(state)
    assert schedule.state_dict() == state  # kept as it came until applied at fit start
    schedule._restore(tuner, state)
    assert config.rank_pattern == state["rank_pattern"]
    assert all(torch.equal(allocator.exp_avg_unc[n], t) for n, t in state["exp_avg_unc"].items())


@pytest.mark.parametrize(
    ("tinit", "tfinal", "message"),
    [
        (0.5, 0.5, "leave no steps"),
        (60, 0, "leave no steps"),
        (-1, 0, "tinit=-1 is invalid"),
        (0, 2.5, "a whole number"),
    ],
)
def test_impossible_schedules_are_config_errors(tinit, tfinal, message):
    with pytest.raises(ConfigError, match=message):
        set_schedule(SimpleNamespace(tinit=tinit, tfinal=tfinal, total_step=10**9), 60)


def test_fractions_become_steps_of_the_run():
    config = SimpleNamespace(tinit=0.1, tfinal=0.25, total_step=10**9)
    assert set_schedule(config, 100) == (10, 25)
    assert (config.total_step, config.tinit, config.tfinal) == (100, 10, 25)


def test_a_run_with_no_room_for_the_schedule_is_refused(glue_fixtures, token_cache, tmp_path):
    with pytest.raises(ConfigError, match="tinit"):
        adalora_run(
            glue_fixtures,
            token_cache,
            tmp_path,
            ["trainer.max_epochs=1", "method.peft_options.tinit=0.6", "method.peft_options.tfinal=0.5"],
        )


def test_the_training_loss_holds_adaloras_orthogonality_term():
    from glue_lora.training.regularizers import TrainingLoss
    from tests.training.test_method_optimizers import tiny

    _, model, _, _ = tiny(["method=adalora"])
    model.eval()
    batch = {"input_ids": torch.randint(5, 100, (2, 6)), "labels": torch.tensor([0, 1])}
    config = model.peft_config["default"]
    terms = []
    for weight in (0.0, 0.5):
        config.orth_reg_weight = weight
        with torch.no_grad():
            loss = TrainingLoss()(lambda b: model(**b), model.get_input_embeddings(), batch)["loss"]
        terms.append(float(loss))
    pairs = [(n, p.detach()) for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n]
    by_hand = sum(
        float(
            torch.linalg.norm(
                (p @ p.T if ".lora_A." in n else p.T @ p) - torch.eye(p.shape[0 if ".lora_A." in n else 1])
            )
        )
        for n, p in pairs
    ) / len(pairs)
    assert terms[1] - terms[0] == pytest.approx(0.5 * by_hand, rel=1e-4)


def test_a_target_rank_not_below_init_r_is_refused_in_one_paragraph(tmp_path):
    from glue_lora.train import run

    cfg = compose_train(["model=tiny_roberta", "method=adalora", "lora.r=12", "dry_run=true"], tmp_path)
    with pytest.raises(ConfigError, match=r"lora.r must be below init_r"):
        run(cfg)
