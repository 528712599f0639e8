"""stack=peer: the same cell trained by transformers Trainer + peft, written as ours writes it, and
the comparison table that sets glue-lora LoRA, full fine-tuning and the peer side by side."""

from __future__ import annotations

import pytest

from glue_lora.reports.comparison import comparison_markdown
from glue_lora.reports.runs import find_runs
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_tiny_run


def test_peer_trains_the_same_cell_and_the_summary_sets_the_variants_side_by_side(
    glue_fixtures, token_cache, tmp_path
):
    from glue_lora.bench.peer_train import run as run_peer
    from glue_lora.train import run as run_ours

    def compose(name: str, variant: str):
        return compose_tiny_run(
            glue_fixtures, token_cache, tmp_path / name, ["task=mrpc", f"variant={variant}"]
        )

    ours = run_ours(compose("ours", "lora"))
    full = run_ours(compose("full", "full"))
    peer_cfg = compose("peer", "peer_lora")
    assert peer_cfg.stack == "peer" and full["lora"] is None
    peer = run_peer(peer_cfg)

    assert (ours["stack"], peer["stack"]) == ("ours", "peer")
    # Same rows, batch and epochs: evaluated at the same optimizer steps, same trainable parameters.
    assert [e["step"] for e in peer["history"]] == [e["step"] for e in ours["history"]] == [6, 12]
    assert peer["params"]["trainable"] == ours["params"]["trainable"]
    assert peer["train"]["optimizer_state_mb"] == pytest.approx(ours["train"]["optimizer_state_mb"])
    assert (tmp_path / "peer" / "adapter" / "adapter_config.json").is_file()
    assert full["sizes"]["adapter_mb"] > 20 * ours["sizes"]["adapter_mb"] > 0

    table = comparison_markdown(find_runs([tmp_path]))
    assert table is not None
    for row in ("| glue-lora r8-a16 |", "| glue-lora full |", "| Trainer + peft r8-a16 |"):
        assert table.count(row) == 3  # best, last and cost tables
    assert "glue-lora r8-a16 − glue-lora full | best" in table
    assert "glue-lora r8-a16 − Trainer + peft r8-a16 | last" in table
    assert "x smaller" in table


def test_peer_refuses_what_it_has_no_equivalent_for(glue_fixtures, token_cache, tmp_path):
    from glue_lora.bench.peer_train import run as run_peer

    cfg = compose_tiny_run(
        glue_fixtures, token_cache, tmp_path, ["variant=peer_lora", "regularizer.rdrop_alpha=1.0"]
    )
    with pytest.raises(ConfigError, match=r"stack=peer .* R-Drop"):
        run_peer(cfg)
    assert not (tmp_path / "results.json").exists()


def test_peer_refuses_methods_other_than_lora(glue_fixtures, token_cache, tmp_path):
    from glue_lora.bench.peer_train import run as run_peer

    cfg = compose_tiny_run(glue_fixtures, token_cache, tmp_path, ["variant=peer_lora", "method=dora"])
    with pytest.raises(ConfigError, match=r"stack=peer .* method=dora"):
        run_peer(cfg)
    assert not (tmp_path / "results.json").exists()


def test_ours_and_the_peer_take_the_same_steps_on_the_same_batches(glue_fixtures, token_cache, tmp_path):
    """From the same start, on the same batches, with dropout off, our Lightning loop and Trainer +
    peft are one optimizer (AdamW groups, warm-up and decay, clipping, MSE loss): the same loss at
    every step and the same weights after. So where the two stacks' scores part (STS-B,
    docs/results/minilm.md) it is the order of the batches, not the loop."""
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import Trainer

    from glue_lora.bench.peer_stack import peer_model, peer_training_arguments
    from glue_lora.data.collate import model_inputs
    from glue_lora.data.tasks import get_task
    from glue_lora.settings.lora import lora_dict
    from glue_lora.settings.model import ModelSettings
    from glue_lora.training.module import GlueLoRAModule, warmup_steps
    from tests.helpers.runs import datamodule_of, method_and_lora_of, model_of

    no_dropout = [
        "model.architecture.hidden_dropout_prob=0.0",
        "model.architecture.attention_probs_dropout_prob=0.0",
    ]
    cfg = compose_tiny_run(
        glue_fixtures, token_cache, tmp_path, ["task=stsb", *(f"+{o}" for o in no_dropout)]
    )
    spec = get_task(cfg.task.name)
    ours = model_of(cfg, spec)
    peer, tokenizer = peer_model(OmegaConf.to_container(cfg.model, resolve=True), spec, lora_dict(cfg))
    ours_trained = [p for p in ours.parameters() if p.requires_grad]
    peer_trained = [p for p in peer.parameters() if p.requires_grad]
    with torch.no_grad():  # the same start: the peer takes our (random) weights, frozen and trained
        for mine, theirs in zip(ours.parameters(), peer.parameters(), strict=True):
            theirs.copy_(mine)
    start = [p.detach().clone() for p in ours_trained]
    datamodule = datamodule_of(cfg, spec, tokenizer)
    datamodule.setup("fit")
    batches = [model_inputs(b) for b in datamodule.train_dataloader()]
    steps = len(batches)
    assert steps == 6 and batches[0]["labels"].dtype == torch.float32

    class LossPerStep(L.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.losses.append(outputs["loss"].item())

    method, lora = method_and_lora_of(cfg, ModelSettings.from_config(cfg.model).lora_targets)
    module = GlueLoRAModule(ours, spec, instantiate(cfg.optimizer), cfg.schedule, method=method, lora=lora)
    ours_losses = LossPerStep()
    L.Trainer(
        max_steps=steps,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ours_losses],
        accelerator="cpu",
    ).fit(module, torch.utils.data.DataLoader(batches, batch_size=None))

    class FixedBatches(Trainer):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.losses: list[float] = []

        def get_train_dataloader(self):
            return torch.utils.data.DataLoader(batches, batch_size=None)

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            self.losses.append(loss.item())
            return loss

    arguments = peer_training_arguments(
        cfg,
        output_dir=tmp_path / "peer_trainer",
        device="cpu",
        max_steps=steps,
        warmup=warmup_steps(cfg.schedule, steps),
        group_by_length=False,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    peer_trainer = FixedBatches(model=peer, args=arguments, train_dataset=batches)
    peer_trainer.train()

    assert peer_trainer.losses == pytest.approx(ours_losses.losses, rel=1e-5)
    assert len(ours_losses.losses) == steps
    apart = max((p - q).abs().max().item() for p, q in zip(ours_trained, peer_trained, strict=True))
    moved = min((p - s).abs().max().item() for p, s in zip(ours_trained, start, strict=True))
    assert apart < 1e-6 < moved  # every trained tensor moved, and both stacks moved it alike


def test_peer_trainer_uses_the_runs_one_gpu_not_all_visible_ones(tmp_path):
    from transformers import TrainingArguments

    from glue_lora.bench.peer_stack import use_devices

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16, use_cpu=True)
    args._n_gpu = 8  # what Trainer's device setup finds on an 8-GPU machine without a launcher
    assert args.train_batch_size == 128  # DataParallel over all 8: 8x the batch
    use_devices(args, 1)
    assert (args.n_gpu, args.train_batch_size) == (1, 16)


def test_peer_refuses_devices_auto_on_a_machine_with_several_gpus(
    monkeypatch, glue_fixtures, token_cache, tmp_path
):
    import torch

    from glue_lora.bench.peer_train import check_peer_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    cfg = compose_tiny_run(glue_fixtures, token_cache, tmp_path, ["stack=peer", "trainer.devices=auto"])
    with pytest.raises(ConfigError, match="several devices"):
        check_peer_config(cfg)
    check_peer_config(compose_tiny_run(glue_fixtures, token_cache, tmp_path, ["stack=peer"]))  # devices=1
