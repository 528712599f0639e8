"""Fidelity to the reference (microsoft/LoRA examples/NLU: transformers 4.4.2 run_glue.py + loralib).

Each test here failed before the matching fix: the recipes against the reference scripts' table,
Adam's epsilon and algorithm, gradient clipping, DeBERTa's dropout and LoRA initialisation, the
global batch and step counting, the warm-up rounding, the reference procedure and eval.py's
reproduction of a mixed-precision run.
"""

from __future__ import annotations

import math
from importlib import resources

import pytest
import torch
import yaml

from glue_lora.data.tasks import get_task
from glue_lora.settings.validation import check_target_arguments
from glue_lora.train import run as train
from glue_lora.training.batching import plan_batches, trainer_batch_arguments, trainer_settings
from glue_lora.training.module import warmup_steps
from glue_lora.training.reference_adamw import ReferenceAdamW
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_tiny_run, compose_train, datamodule_of, model_of

TABLE = yaml.safe_load(resources.files("glue_lora.settings").joinpath("reference_scripts.yaml").read_text())
RECIPES = [(model, task) for model, rows in TABLE["scripts"].items() for task in rows]


def recipe_values(cfg) -> dict:
    """A composed recipe in the reference table's terms."""
    schedule = cfg.schedule
    interval = cfg.trainer.val_check_interval
    values = {
        "per_device_batch": cfg.data.batch_size,
        "global_batch": cfg.data.global_batch_size,
        "lr": cfg.optimizer.lr,
        "epochs": cfg.trainer.max_epochs,
        "max_len": cfg.data.max_length,
        "eval_steps": interval if isinstance(interval, int) else None,
        "weight_decay": cfg.optimizer.weight_decay,
        "lora_r": cfg.lora.r,
        "lora_alpha": cfg.lora.alpha,
        "fp16": cfg.trainer.precision == "16-mixed",
        "deterministic": cfg.deterministic,
        "mnli_init": cfg.init_adapter is not None,
        "seed": cfg.seed,
    }
    if schedule.warmup_steps:
        values["warmup_steps"] = schedule.warmup_steps
    else:
        values["warmup_ratio"] = schedule.warmup_ratio
    if cfg.model.cls_dropout is not None:
        values["cls_dropout"] = cfg.model.cls_dropout
    return values


@pytest.mark.parametrize(("model", "task"), RECIPES)
def test_every_recipe_equals_its_reference_script(model, task, tmp_path):
    row = TABLE["scripts"][model][task]
    cfg = compose_train([f"model={model}", f"task={task}", f"paths.adapters_dir={tmp_path}"])
    deviations = TABLE["deviations"].get(f"{model}/{task}", {})
    got = recipe_values(cfg)
    want = {k: v for k, v in row.items() if k not in ("script", "num_gpus")}
    for key, value in want.items():
        if key in deviations:
            assert got[key] != value, f"{model}/{task}: {key} is listed as a deviation but matches"
        else:
            assert got[key] == pytest.approx(value), f"{model}/{task} {key} (script {row['script']})"
    # What the scripts leave to transformers 4.4.2's TrainingArguments.
    defaults = TABLE["defaults"]
    assert cfg.optimizer.eps == defaults["adam_epsilon"]
    assert list(cfg.optimizer.betas) == [defaults["adam_beta1"], defaults["adam_beta2"]]
    assert cfg.optimizer._target_ == "glue_lora.training.reference_adamw.ReferenceAdamW"
    assert (cfg.trainer.gradient_clip_val, cfg.trainer.gradient_clip_algorithm) == (1.0, "norm")
    assert cfg.schedule.name == defaults["lr_scheduler_type"]
    assert cfg.lora.dropout == defaults["lora_dropout"]


def test_cfg_job_shows_epsilon_clipping_global_batch_and_interval():
    from tests.helpers.runs import run_cli

    shown = run_cli("train.py", ["model=deberta_v2_xxl", "task=sst2", "--cfg", "job"], timeout=120)
    cfg = yaml.safe_load(shown.stdout)
    assert cfg["optimizer"]["eps"] == 1e-8
    assert cfg["trainer"]["gradient_clip_val"] == 1.0
    assert cfg["data"]["global_batch_size"] == 64
    assert cfg["trainer"]["val_check_interval"] == 100  # the script's --eval_steps 100


def test_the_generic_defaults_use_the_reference_epsilon_and_clipping():
    cfg = compose_train([])
    assert cfg.optimizer.eps == 1e-8
    assert (cfg.trainer.gradient_clip_val, cfg.trainer.gradient_clip_algorithm) == (1.0, "norm")


def transformers_442_adamw_step(p, grad, state, lr, betas, eps, weight_decay):
    """transformers 4.4.2 ``AdamW.step`` for one parameter, transcribed from its source."""
    state.setdefault("step", 0)
    state.setdefault("exp_avg", torch.zeros_like(p))
    state.setdefault("exp_avg_sq", torch.zeros_like(p))
    beta1, beta2 = betas
    state["step"] += 1
    state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = state["exp_avg_sq"].sqrt().add_(eps)
    step_size = lr * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
    p.addcdiv_(state["exp_avg"], denom, value=-step_size)
    p.add_(p, alpha=-lr * weight_decay)


def test_reference_adamw_steps_as_transformers_4_4_2():
    generator = torch.Generator().manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(8, 16, generator=generator))
    theirs = ours.detach().clone()
    optimizer = ReferenceAdamW([ours], lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    state: dict = {}
    for _ in range(5):
        grad = torch.randn(8, 16, generator=generator) * 5e-7  # LoRA-A-sized gradients
        ours.grad = grad.clone()
        optimizer.step()
        transformers_442_adamw_step(theirs, grad, state, 5e-4, (0.9, 0.999), 1e-8, 0.1)
    assert torch.equal(ours.detach(), theirs)


def test_reference_adamw_moves_tiny_gradients_less_than_torch_adamw_at_first():
    # Epsilon is added before the bias correction: at step 1 it acts as 31.6 x eps.
    start = torch.zeros(1000)
    grad = torch.full((1000,), 5e-7)
    moved = {}
    for name, cls in (("reference", ReferenceAdamW), ("torch", torch.optim.AdamW)):
        p = torch.nn.Parameter(start.clone())
        p.grad = grad.clone()
        cls([p], lr=1.0, eps=1e-8, weight_decay=0.0).step()
        moved[name] = float(-p.detach().mean())
    assert moved["torch"] == pytest.approx(5e-7 / (5e-7 + 1e-8), rel=1e-5)
    assert moved["reference"] == pytest.approx(5e-7 / (5e-7 + 1e-8 / math.sqrt(1 - 0.999)), rel=1e-5)


def test_deberta_cls_dropout_feeds_the_classifier_only():
    cfg = compose_train(["model=tiny_deberta", "model.cls_dropout=0.2", "model.fast_dropout=false"])
    model = model_of(cfg, get_task("rte"))
    base = model.base_model.model
    assert base.dropout.p == 0.2  # before the classifier, as the reference's cls_dropout
    assert base.pooler.dropout.p == 0.0  # ContextPooler: the config's pooler_dropout, 0


def lora_a(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if ".lora_A." in n])


def test_deberta_lora_a_is_drawn_as_the_reference_draws_it():
    torch.manual_seed(0)
    deberta = model_of(compose_train(["model=tiny_deberta"]), get_task("rte"))
    values = lora_a(deberta)
    std = deberta.config.initializer_range
    assert values.std().item() == pytest.approx(std, rel=0.1)  # N(0, initializer_range)
    within_one_std = (values.abs() < values.std()).float().mean().item()
    assert within_one_std == pytest.approx(0.683, abs=0.05)  # a normal's share (a uniform's: 0.577)
    roberta = model_of(compose_train(["model=tiny_roberta"]), get_task("rte"))
    bound = 1 / math.sqrt(roberta.config.hidden_size)  # kaiming_uniform(a=sqrt(5)), as loralib
    assert lora_a(roberta).abs().max().item() <= bound


def test_the_global_batch_is_reached_by_accumulation_on_fewer_devices():
    cfg = compose_train(["model=roberta_base", "task=mnli", "trainer=cpu"])
    plan = batch_plan(cfg)
    assert (plan.per_device, plan.devices, plan.accumulation, plan.global_batch) == (16, 1, 8, 128)
    assert "accumulated to reach data.global_batch_size=128" in plan.describe()
    opted_out = batch_plan(compose_train(["model=roberta_base", "task=mnli", "data.global_batch_size=null"]))
    assert (opted_out.accumulation, opted_out.global_batch) == (1, 16)
    two_gpus = plan_batches(16, 128, {"devices": 2, "accelerator": "gpu"})
    assert two_gpus.accumulation == 4
    with pytest.raises(ConfigError, match="not a multiple"):
        plan_batches(48, 128, {"devices": 1})
    with pytest.raises(ConfigError, match="both set the accumulation"):
        plan_batches(16, 128, {"devices": 1, "accumulate_grad_batches": 2})


def test_evaluation_interval_counts_optimizer_steps():
    plan = plan_batches(8, 32, {"devices": 1})
    assert trainer_batch_arguments(plan, 8) == {
        "accumulate_grad_batches": 4,
        "val_check_interval": 32,
        "check_val_every_n_epoch": None,  # counted across epochs, as the reference's eval_steps
    }
    assert trainer_batch_arguments(plan, 0.5) == {"accumulate_grad_batches": 4}


def test_an_evaluation_interval_longer_than_an_epoch_counts_across_epochs(
    glue_fixtures, token_cache, tmp_path
):
    # 48 rows at batch 8: 6 optimizer steps an epoch; Lightning refused an interval of 8 (ValueError).
    overrides = ["task=rte", "trainer.max_epochs=3", "trainer.val_check_interval=8"]
    cfg = compose_tiny_run(glue_fixtures, token_cache, tmp_path, overrides)
    results = train(cfg)
    assert [entry["step"] for entry in results["history"]] == [8, 16]


def test_a_run_accumulates_and_evaluates_every_n_optimizer_steps(
    glue_fixtures, token_cache, tmp_path, capsys
):
    cfg = compose_tiny_run(
        glue_fixtures,
        token_cache,
        tmp_path,
        [
            "task=rte",
            "data.batch_size=4",
            "data.global_batch_size=8",
            "trainer.max_epochs=1",
            "trainer.val_check_interval=2",
            "trainer.check_val_every_n_epoch=null",
        ],
    )
    results = train(cfg)
    # 48 rows at 4 per micro-batch: 12 micro-batches, 6 optimizer steps, evaluated every 2.
    assert [entry["step"] for entry in results["history"]] == [2, 4, 6]
    assert "effective batch size 8 (per device 4 x 1 device(s) x 2 accumulation step(s))" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(("ratio", "total", "want"), [(0.06, 108, 7), (0.1, 25, 3), (0.06, 50, 3)])
def test_warmup_from_a_ratio_rounds_up_as_the_reference(ratio, total, want):
    # transformers 4.4.2: math.ceil(num_training_steps * warmup_ratio), where round() gave 6 and 2.
    assert warmup_steps({"warmup_ratio": ratio}, total) == want == math.ceil(total * ratio)


def test_reference_procedure_turns_off_every_deviation_of_ours():
    fast = compose_train(["model=roberta_base", "task=rte"])
    reference = compose_train(["model=roberta_base", "task=rte", "procedure=reference"])
    assert (fast.data.sampler, fast.data.padding) == ("length_grouped", "longest")
    assert (reference.data.sampler, reference.data.padding) == ("random", "max_length")
    for flag in ("fast_dropout", "fused_lora", "last_layer_cls_only"):
        assert fast.model[flag] is True and reference.model[flag] is False, flag
    assert (fast.model.attn_implementation, reference.model.attn_implementation) == ("sdpa", "eager")
    minilm = compose_train(["procedure=reference"])
    assert minilm.optimizer._target_ == "glue_lora.training.reference_adamw.ReferenceAdamW"
    # its path before the package's subpackages is refused, naming the new one
    with pytest.raises(ConfigError, match=r"write 'glue_lora\.training\.reference_adamw\.ReferenceAdamW'"):
        check_target_arguments({"optimizer": {"_target_": "glue_lora.reference_adamw.ReferenceAdamW"}})
    assert minilm.optimizer.eps == 1e-8


def test_reference_procedure_batches_in_random_order_padded_to_max_length(glue_fixtures, token_cache):
    from glue_lora.model.backbone import build_tokenizer

    cfg = compose_tiny_run(
        glue_fixtures, token_cache, None, ["task=rte", "procedure=reference", "data.max_length=64"]
    )
    spec = get_task("rte")
    tokenizer = build_tokenizer(dict(cfg.model), None)
    datamodule = datamodule_of(cfg, spec, tokenizer)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert {tuple(b["input_ids"].shape[1:]) for b in batches} == {(64,)}
    lengths = [b["attention_mask"].sum(1).tolist() for b in batches]
    assert any(row != sorted(row, reverse=True) for row in lengths)  # not sorted by length
    order = [i for b in datamodule.train_dataloader().batch_sampler for i in b]
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    assert order == perm  # the epoch's permutation, cut into batches as it is


def test_eval_reproduces_a_bf16_run_with_its_own_batch_size(glue_fixtures, token_cache, tmp_path):
    from glue_lora.evaluate import run as evaluate
    from tests.helpers.runs import compose_tiny_eval

    cfg = compose_tiny_run(
        glue_fixtures,
        token_cache,
        tmp_path / "run",
        ["task=stsb", "trainer.precision=bf16-mixed", "data.eval_batch_size=5", "trainer.max_epochs=1"],
    )
    results = train(cfg)
    evaluated = evaluate(compose_tiny_eval(tmp_path / "run", glue_fixtures, token_cache, tmp_path / "eval"))
    assert evaluated["evaluation"] == {"precision": "bf16-mixed", "batch_size": 5, "padding": "longest"}
    assert evaluated["dev"] == results["dev"]  # bit for bit


def batch_plan(cfg):
    """The batch plan train.run makes of ``cfg``."""
    return plan_batches(cfg.data.batch_size, cfg.data.get("global_batch_size"), trainer_settings(cfg.trainer))
