"""EVA, CorDA and LoRA-GA start LoRA from train batches; LoftQ is refused where it cannot run."""

from __future__ import annotations

import pytest
import torch

from glue_lora.data.tasks import get_task
from glue_lora.model.data_driven_starts import initial_adapter
from glue_lora.settings.method import MethodSettings
from glue_lora.train import set_determinism
from glue_lora.utils.errors import ConfigError
from tests.helpers.adapters import tokens
from tests.helpers.runs import compose_train, model_of

SPEC = get_task("rte")


def _batches(count: int = 4, with_labels: bool = True) -> list[dict[str, torch.Tensor]]:
    batches = []
    for i in range(count):
        batch = tokens(n=8, length=16, seed=i)
        if with_labels:
            batch["labels"] = torch.tensor([0, 1] * 4)
        batches.append(batch)
    return batches


def _build(method: str, calibration=None, overrides: tuple[str, ...] = ()):
    cfg = compose_train(["model=tiny_roberta", "task=rte", f"method={method}", *overrides])
    set_determinism(0, False)
    return model_of(cfg, SPEC, calibration=calibration)


def _lora_pairs(model) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """Each LoRA layer's (A, B, frozen weight, scaling)."""
    from peft.tuners.lora import LoraLayer

    return {
        name: (
            module.lora_A["default"].weight.detach(),
            module.lora_B["default"].weight.detach(),
            module.get_base_layer().weight.detach(),
            module.scaling["default"],
        )
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_eva_starts_a_from_orthonormal_directions_of_the_layer_inputs():
    model = _build("eva", _batches(with_labels=False), ("method.peft_options.eva_config.rho=1.0",))
    default = _lora_pairs(_build("eva"))  # no batches: LoRA's default start, same shapes
    for name, (a, b, _, _) in _lora_pairs(model).items():
        assert torch.count_nonzero(b) == 0
        # Right-singular vectors of the inputs: orthonormal rows, unlike the default's random A.
        assert torch.allclose(a @ a.T, torch.eye(a.shape[0]), atol=1e-4), name
        assert not torch.allclose(default[name][0] @ default[name][0].T, torch.eye(a.shape[0]), atol=1e-2)


def test_eva_a_spans_the_top_principal_directions_of_the_query_inputs():
    batches = _batches(count=8, with_labels=False)
    bare = _build("eva")  # the first query layer's inputs, as the frozen model sees them
    layer = bare.base_model.model.roberta.encoder.layer[0].attention.self.query
    inputs, mask = [], {}
    handle = layer.register_forward_hook(lambda m, i, o: inputs.append(i[0][mask["now"]]))
    for batch in batches:
        mask["now"] = batch["attention_mask"].bool()
        _logits(bare, batch)
    handle.remove()
    x = torch.cat(inputs)
    _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)

    model = _build("eva", batches, ("method.peft_options.eva_config.rho=1.0",))
    a = model.base_model.model.roberta.encoder.layer[0].attention.self.query.lora_A["default"].weight
    # the two largest directions lie in the span of A's (orthonormal) rows
    assert (vh[:2] @ a.detach().T).norm(dim=1).min() > 0.95


@pytest.mark.parametrize("method", ["corda", "lora_ga"])
def test_a_residual_start_leaves_the_models_output_as_the_bases(method):
    batches = _batches()
    base_logits = _logits(_build("lora", overrides=("lora=none",)), batches[0])
    model = _build(method, batches)
    pairs = _lora_pairs(model)
    assert all(torch.count_nonzero(b) > 0 for _, b, _, _ in pairs.values())  # B0 A0 is not zero
    # W - s B0 A0 + s B0 A0: the same model as the base before the first step.
    assert torch.allclose(_logits(model, batches[0]), base_logits, atol=1e-5)
    # and the frozen weight is the residual
    original = _lora_pairs(_build(method))
    for name, (a, b, weight, scaling) in pairs.items():
        assert torch.allclose(weight + scaling * b @ a, original[name][2], atol=1e-5), name
        assert not torch.allclose(weight, original[name][2])
    assert set(initial_adapter(model)) == {n for n, _ in model.named_parameters() if ".lora_" in n}


def test_calibration_batches_are_the_first_of_the_runs_epoch_and_draw_no_random_numbers(
    glue_fixtures, token_cache
):
    from glue_lora.model.backbone import build_tokenizer
    from tests.helpers.runs import TINY, datamodule_of

    cfg = compose_train([*TINY, f"paths.glue_dir={glue_fixtures}", f"data.cache_dir={token_cache}"])
    tokenizer = build_tokenizer(cfg.model, None)
    datamodule = datamodule_of(cfg, SPEC, tokenizer)
    datamodule.setup("fit")
    state = torch.random.get_rng_state()
    batches = datamodule.calibration_batches(3)
    assert torch.equal(torch.random.get_rng_state(), state)
    first = [b for _, b in zip(range(3), datamodule.train_dataloader(), strict=False)]
    assert len(batches) == 3
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, first, strict=True))


def test_a_data_driven_start_needs_calibration_batches():
    with pytest.raises(ConfigError, match=r"method=eva starts LoRA from batches .*calibration_batches=16"):
        MethodSettings(name="eva", peft_options={"init_lora_weights": "eva"}, calibration_batches=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="LoftQ runs where there is a GPU")
def test_loftq_is_refused_without_a_gpu_but_dry_run_counts_it():
    from glue_lora.train import run

    with pytest.raises(ConfigError, match=r"method=loftq .*bitsandbytes on a GPU.*lacks a CUDA GPU"):
        _build("loftq")

    def count_on_meta(method: str) -> int:
        cfg = compose_train(["model=tiny_roberta", "task=rte", f"method={method}", "dry_run=true"])
        return run(cfg)["params"]["trainable"]

    assert count_on_meta("loftq") == count_on_meta("lora") > 0


@pytest.mark.parametrize("method", ["eva", "corda", "lora_ga"])
def test_the_start_computed_again_is_bit_identical(method):
    """What resume=true relies on: the rebuilt model has the same start and the same residual base."""
    first = _build(method, _batches())
    again = _build(method, _batches())
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
