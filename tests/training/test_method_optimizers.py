"""The methods that bring their own optimizer: LoRA+ (B at lr x ratio) and LoRA-FA (A frozen), each
with the LR schedule on every param group; lr_tiers refused with either."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from hydra.utils import instantiate

from glue_lora.data.tasks import get_task
from glue_lora.model.build import build_model
from glue_lora.settings.lora import lora_settings
from glue_lora.settings.method import method_settings
from glue_lora.settings.model import ModelSettings
from glue_lora.train import run
from glue_lora.training.module import build_schedule
from glue_lora.training.optimizers import build_optimizer, check_method_optimizer
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import TINY, compose_train


def tiny(overrides: list[str]):
    """The tiny model of ``method=...`` and the settings train.run would give the module."""
    cfg = compose_train(["model=tiny_roberta", "task=rte", *overrides])
    model_settings = ModelSettings.from_config(cfg.model)
    method = method_settings(cfg.method, cfg.lora)
    lora = lora_settings(cfg.lora, model_settings.lora_targets)
    torch.manual_seed(0)
    model = build_model(model_settings, lora, get_task("rte"), method=method)
    return cfg, model, method, lora


def group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_loraplus_trains_b_at_ratio_times_lr_with_the_optimizer_groups_settings():
    cfg, model, method, lora = tiny(["method=loraplus", "optimizer.weight_decay=0.05"])
    optimizer = build_optimizer(model, instantiate(cfg.optimizer), method, lora)
    lr, ratio = cfg.optimizer.lr, 16
    assert type(optimizer) is torch.optim.AdamW
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(trained)
    for name, p in trained:
        group = group_of(optimizer, p)
        assert group["betas"] == (0.9, 0.999) and group["eps"] == cfg.optimizer.eps
        if ".lora_A." in name:
            assert group["lr"] == lr and group["weight_decay"] == 0.05, name
        elif ".lora_B." in name:
            assert group["lr"] == lr * ratio and group["weight_decay"] == 0.05, name
        elif name.endswith("bias"):  # peft puts every 1-D weight with B, undecayed as ours
            assert group["lr"] == lr * ratio and group["weight_decay"] == 0.0, name


def test_loraplus_keeps_the_ratio_through_warmup_and_decay():
    cfg, model, method, lora = tiny(["method=loraplus", "method.optimizer_options.loraplus_lr_ratio=4"])
    optimizer = build_optimizer(model, instantiate(cfg.optimizer), method, lora)
    a = next(p for n, p in model.named_parameters() if ".lora_A." in n)
    b = next(p for n, p in model.named_parameters() if ".lora_B." in n)
    scheduler = build_schedule(optimizer, {"name": "linear", "warmup_steps": 3}, total_steps=10)
    seen_a = []
    for _ in range(9):
        optimizer.step()
        scheduler.step()
        lr_a, lr_b = group_of(optimizer, a)["lr"], group_of(optimizer, b)["lr"]
        assert lr_b == pytest.approx(4 * lr_a)
        seen_a.append(lr_a)
    peak = max(seen_a)
    assert peak == pytest.approx(cfg.optimizer.lr)  # warm-up reaches lr, then decays
    assert seen_a.index(peak) == 2 and seen_a[-1] < peak / 5


def test_lorafa_freezes_a_and_takes_the_optimizer_groups_settings():
    from peft.optimizers.lorafa import LoraFAOptimizer

    cfg, model, method, lora = tiny(["method=lora_fa", "optimizer.weight_decay=0.05"])
    a_names = [n for n, _ in model.named_parameters() if ".lora_A." in n]
    assert a_names and not any(p.requires_grad for n, p in model.named_parameters() if n in a_names)
    optimizer = build_optimizer(model, instantiate(cfg.optimizer), method, lora)
    assert isinstance(optimizer, LoraFAOptimizer)
    (group,) = optimizer.param_groups
    assert group["lr"] == cfg.optimizer.lr and group["weight_decay"] == 0.05
    assert group["betas"] == (0.9, 0.999) and group["eps"] == cfg.optimizer.eps


@pytest.mark.parametrize("name", ["loraplus", "lora_fa"])
def test_lr_tiers_are_refused_with_a_method_optimizer(name):
    cfg = compose_train(["model=tiny_roberta", f"method={name}", "lr_tiers=tiered12"])
    with pytest.raises(ConfigError, match="lr_tiers=none"):
        check_method_optimizer(method_settings(cfg.method, cfg.lora), dict(cfg.lr_tiers))
    with pytest.raises(ConfigError, match="layer-wise learning rates"):
        run(compose_train(["model=tiny_roberta", f"method={name}", "lr_tiers=tiered12", "dry_run=true"]))


def test_loraplus_without_its_ratio_is_refused():
    cfg = compose_train(
        ["model=tiny_roberta", "method=loraplus", "~method.optimizer_options.loraplus_lr_ratio"]
    )
    with pytest.raises(ConfigError, match="loraplus_lr_ratio"):
        check_method_optimizer(method_settings(cfg.method, cfg.lora), None)


class RecordLora:
    """A callback for train.run: the LoRA weights at fit start and end, the optimizer, and each
    group's learning rate after every step."""

    seen: ClassVar[dict] = {}

    def __new__(cls):
        import lightning as L

        class _Record(L.Callback):
            def on_train_start(self, trainer, pl_module):
                RecordLora.seen["start"] = _lora_weights(pl_module.model)
                RecordLora.seen["optimizer"] = trainer.optimizers[0]
                RecordLora.seen["trainable"] = sum(
                    p.numel() for p in pl_module.model.parameters() if p.requires_grad
                )
                RecordLora.seen["lrs"] = []

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                RecordLora.seen["lrs"].append([g["lr"] for g in trainer.optimizers[0].param_groups])

            def on_train_end(self, trainer, pl_module):
                RecordLora.seen["end"] = _lora_weights(pl_module.model)

        return _Record()


def _lora_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}


def tiny_run(glue_fixtures, token_cache, tmp_path, overrides: list[str]) -> dict:
    RecordLora.seen.clear()
    cfg = compose_train(
        [
            *TINY,
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "trainer.max_epochs=1",
            "optimizer.lr=1e-2",
            "schedule.warmup_steps=2",
            f"+callbacks.record._target_={__name__}.RecordLora",
            *overrides,
        ],
        tmp_path,
    )
    return run(cfg)


def rises_then_falls(values: list[float]) -> bool:
    peak = values.index(max(values))
    return 0 < peak < len(values) - 1 and values[-1] < values[peak]


def test_lorafa_run_keeps_a_unchanged_and_trains_b_on_the_schedule(glue_fixtures, token_cache, tmp_path):
    from peft.optimizers.lorafa import LoraFAOptimizer
    from safetensors.torch import load_file

    results = tiny_run(glue_fixtures, token_cache, tmp_path, ["method=lora_fa"])
    start, end = RecordLora.seen["start"], RecordLora.seen["end"]
    a_names = [n for n in start if ".lora_A." in n]
    b_names = [n for n in start if ".lora_B." in n]
    assert a_names and all(torch.equal(start[n], end[n]) for n in a_names)
    assert b_names and all(not torch.equal(start[n], end[n]) for n in b_names)
    assert isinstance(RecordLora.seen["optimizer"], LoraFAOptimizer)
    assert rises_then_falls([lrs[0] for lrs in RecordLora.seen["lrs"]])  # warm-up, then decay
    # A was frozen when the parameters were counted (before the optimizer froze it), and is saved.
    assert results["params"]["trainable"] == RecordLora.seen["trainable"]
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    saved_a = [v for k, v in saved.items() if ".lora_A." in k]
    assert len(saved_a) == len(a_names)
    assert all(any(torch.equal(v, start[n]) for n in a_names) for v in saved_a)


def test_loraplus_run_keeps_the_ratio_on_the_schedule(glue_fixtures, token_cache, tmp_path):
    results = tiny_run(glue_fixtures, token_cache, tmp_path, ["method=loraplus"])
    groups = RecordLora.seen["optimizer"].param_groups
    ratios = [g["initial_lr"] / 1e-2 for g in groups]
    b = ratios.index(16)
    assert ratios[0] == 1 and ratios[b] == pytest.approx(16)
    lrs = RecordLora.seen["lrs"]
    assert rises_then_falls([step[0] for step in lrs])
    assert all(step[b] == pytest.approx(16 * step[0]) for step in lrs)
    start, end = RecordLora.seen["start"], RecordLora.seen["end"]
    assert all(not torch.equal(start[n], end[n]) for n in start)
    assert results["method"]["name"] == "loraplus"
