"""A search of a two-process job (trainer=ddp, gloo on CPU): every rank of a trial trains the
trial's parameters, not values of its own (lightning-hydra-template issue 639: each rank re-ran the
sweeper and sampled its own while their gradients were averaged)."""

from __future__ import annotations

import optuna
import pytest

from tests.helpers.runs import ROOT, TINY, run_cli


@pytest.mark.slow  # two processes started by Lightning, one trial: a minute or two on 2 CPU cores
def test_both_ranks_of_a_trial_train_the_trials_learning_rate(glue_fixtures, token_cache, tmp_path):
    sweep, seen = tmp_path / "search", tmp_path / "seen"
    done = run_cli(
        "train.py",
        [
            "hparams_search=lr",
            *TINY,
            "trainer.max_epochs=1",
            "task=stsb",
            "+task.val_fraction=0.5",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "hydra.sweeper.n_trials=1",
            f"hydra.sweep.dir={sweep}",
            "+callbacks.seen._target_=tests.helpers.callbacks.RecordLearningRate",
            f"+callbacks.seen.out={seen}",
        ],
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (trial,) = optuna.load_study(
        study_name="lr-stsb-lora-seed0", storage=f"sqlite:///{sweep}/optuna.db"
    ).trials
    rates = {p.name: float(p.read_text()) for p in seen.iterdir()}
    assert sorted(rates) == ["lr_rank0.txt", "lr_rank1.txt"]
    assert rates["lr_rank0.txt"] == rates["lr_rank1.txt"] == pytest.approx(trial.params["optimizer.lr"])
