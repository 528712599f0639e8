"""glue-lora import-loralib: microsoft/LoRA (loralib) state dicts become PEFT adapters, same math."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from glue_lora.adapters.import_loralib import import_loralib
from glue_lora.adapters.loading import build_base, load_model
from glue_lora.adapters.record import read_adapter
from glue_lora.commands import main as glue_lora
from glue_lora.utils.errors import DataError
from tests.helpers.adapters import tokens

HIDDEN, LAYERS, R, ALPHA = 32, 2, 4, 16.0  # tiny_roberta's shape; a rank and alpha of our choosing


def loralib_state_dict(n_labels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict named as microsoft/LoRA saves it (lora_A: r x in, lora_B: out x r, classifier.*)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(LAYERS):
        for target in ("query", "value"):
            prefix = f"roberta.encoder.layer.{i}.attention.self.{target}"
            state[f"{prefix}.lora_A"] = torch.randn(R, HIDDEN, generator=g)
            state[f"{prefix}.lora_B"] = torch.randn(HIDDEN, R, generator=g)
    state["classifier.dense.weight"] = torch.randn(HIDDEN, HIDDEN, generator=g) / HIDDEN**0.5
    state["classifier.dense.bias"] = torch.randn(HIDDEN, generator=g)
    state["classifier.out_proj.weight"] = torch.randn(n_labels, HIDDEN, generator=g)
    state["classifier.out_proj.bias"] = torch.randn(n_labels, generator=g)
    return state


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    root = tmp_path_factory.mktemp("loralib")
    state = loralib_state_dict()
    torch.save(state, root / "tiny_lora_mnli.bin")
    args = ["import-loralib", str(root / "tiny_lora_mnli.bin"), "--model", "tiny_roberta", "--task", "mnli"]
    assert glue_lora([*args, str(root / "adapter"), "--alpha", str(ALPHA)]) == 0
    return root / "adapter", state


def test_the_record_says_what_was_imported(imported):
    adapter_dir, _ = imported
    info = read_adapter(adapter_dir)
    assert (info.task, info.label_names) == ("mnli", ("entailment", "neutral", "contradiction"))
    assert (info.lora["r"], info.lora["alpha"], info.lora["targets"]) == (R, ALPHA, ["query", "value"])
    assert info.lora["layers"] is None  # every layer
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (R, ALPHA, "LORA")


def test_imported_lora_computes_w_x_plus_scaled_b_a_x(imported):
    adapter_dir, state = imported
    model, _, info = load_model(adapter_dir)
    scale = ALPHA / R
    layer = model.get_base_model().roberta.encoder.layer[0].attention.self.query
    w, b = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
    a, b_up = (
        state["roberta.encoder.layer.0.attention.self.query.lora_A"],
        state["roberta.encoder.layer.0.attention.self.query.lora_B"],
    )
    x = torch.randn(5, HIDDEN, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), x @ w.T + b + scale * (x @ a.T @ b_up.T), atol=1e-5, rtol=1e-5)

    # The whole model: a plain base whose weights we patch by hand, W <- W + (alpha/r) B A.
    reference = build_base(info).eval()
    with torch.no_grad():
        for i in range(LAYERS):
            attention = reference.roberta.encoder.layer[i].attention.self
            for target in ("query", "value"):
                prefix = f"roberta.encoder.layer.{i}.attention.self.{target}"
                getattr(attention, target).weight += (
                    scale * state[f"{prefix}.lora_B"] @ state[f"{prefix}.lora_A"]
                )
        reference.classifier.load_state_dict(
            {k.removeprefix("classifier."): v for k, v in state.items() if k.startswith("classifier.")}
        )
    batch = tokens()
    with torch.inference_mode():
        expected, got = reference(**batch).logits, model(**batch).logits
    assert (got - expected).abs().max().item() < 1e-5
    assert expected.abs().max().item() > 1e-2  # not a trivially zero comparison

    # The directory is a standard PEFT adapter too.
    with torch.inference_mode():
        plain = PeftModel.from_pretrained(build_base(info), adapter_dir).eval()
        assert (plain(**batch).logits - expected).abs().max().item() < 1e-5


def test_bad_checkpoints_are_refused(tmp_path):
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Exploit()}, tmp_path / "evil.bin")
    with pytest.raises(DataError, match="weights_only"):
        import_loralib(tmp_path / "evil.bin", "tiny_roberta", "mnli", tmp_path / "out1")
    assert not marker.exists()  # the pickle's code never ran

    state = loralib_state_dict()
    state["roberta.encoder.layer.0.attention.self.query.weight"] = torch.zeros(HIDDEN, HIDDEN)
    torch.save(state, tmp_path / "full.bin")
    with pytest.raises(DataError, match=r"attention\.self\.query\.weight"):
        import_loralib(tmp_path / "full.bin", "tiny_roberta", "mnli", tmp_path / "out2")

    torch.save(loralib_state_dict(), tmp_path / "mnli.bin")
    with pytest.raises(DataError, match="rte has 2"):
        import_loralib(tmp_path / "mnli.bin", "tiny_roberta", "rte", tmp_path / "out3")
    assert not (tmp_path / "out3").exists()
