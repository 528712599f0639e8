"""R-Drop and Cutoff: the loss as defined (against a hand computation) and two forward passes."""

from __future__ import annotations

import csv
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from glue_lora.data.tasks import get_task
from glue_lora.settings.validation import validate
from glue_lora.train import run
from glue_lora.training.module import GlueLoRAModule
from glue_lora.training.regularizers import TrainingLoss, cutoff, js_divergence, symmetric_kl
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import TINY, compose_train, model_of


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def softmax(row: torch.Tensor) -> list[float]:
    exp = [math.exp(v) for v in row.double().tolist()]
    return [e / sum(exp) for e in exp]


def hand_symmetric_kl(a: torch.Tensor, b: torch.Tensor) -> float:
    rows = [(softmax(x), softmax(y)) for x, y in zip(a, b, strict=True)]
    return sum(0.5 * (kl(p, q) + kl(q, p)) for p, q in rows) / len(rows)


def hand_js(a: torch.Tensor, b: torch.Tensor) -> float:
    total = 0.0
    for x, y in zip(a, b, strict=True):
        p, q = softmax(x), softmax(y)
        m = [(u + v) / 2 for u, v in zip(p, q, strict=True)]
        total += 0.5 * (kl(p, m) + kl(q, m))
    return total / len(a)


def hand_ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return sum(-math.log(softmax(row)[int(y)]) for row, y in zip(logits, labels, strict=True)) / len(labels)


def test_divergences_match_their_definitions():
    torch.manual_seed(0)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    assert symmetric_kl(a, b).item() == pytest.approx(hand_symmetric_kl(a, b), rel=1e-5)
    assert js_divergence(a, b).item() == pytest.approx(hand_js(a, b), rel=1e-5)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert 0 < js_divergence(a, b).item() <= math.log(2)


@pytest.fixture(scope="module")
def tiny():
    """A tiny RoBERTa with LoRA (dropout on), and a padded batch of 4 rows."""
    cfg = compose_train(["model=tiny_roberta", "task=rte", "lora.dropout=0.1"])
    torch.manual_seed(0)
    model = model_of(cfg, get_task("rte")).train()
    with torch.no_grad():  # confident predictions, so that KL / JS terms are far from rounding noise
        for name, p in model.named_parameters():
            if "modules_to_save" in name and name.endswith("out_proj.weight"):
                p.mul_(200.0)
    input_ids = torch.randint(5, 1000, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 8:] = 0
    mask[3, 5:] = 0
    input_ids[mask == 0] = 0
    batch = {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}
    return cfg, model, batch


def counting(model):
    calls = []

    def forward(batch):
        calls.append(batch)
        return model(**batch)

    return forward, calls


def test_rdrop_is_mean_ce_plus_alpha_symmetric_kl_in_two_passes(tiny):
    _, model, batch = tiny
    forward, calls = counting(model)
    torch.manual_seed(1)
    terms = TrainingLoss(rdrop_alpha=0.7)(forward, model.get_input_embeddings(), batch)
    assert len(calls) == 2

    torch.manual_seed(1)  # the same dropout masks, by hand
    with torch.no_grad():
        first, second = model(**batch).logits, model(**batch).logits
    ce = 0.5 * (hand_ce(first, batch["labels"]) + hand_ce(second, batch["labels"]))
    kl_term = hand_symmetric_kl(first, second)
    assert kl_term > 1e-6  # dropout made the passes differ
    assert terms["rdrop_kl"].item() == pytest.approx(kl_term, rel=1e-4)
    assert terms["loss"].item() == pytest.approx(ce + 0.7 * kl_term, rel=1e-5)


def test_plain_loss_is_one_pass(tiny):
    _, model, batch = tiny
    forward, calls = counting(model)
    torch.manual_seed(1)
    terms = TrainingLoss()(forward, model.get_input_embeddings(), batch)
    torch.manual_seed(1)
    assert len(calls) == 1 and set(terms) == {"loss"}
    assert terms["loss"].item() == pytest.approx(model(**batch).loss.item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["token", "span"])
def test_cutoff_zeroes_and_masks_a_share_of_real_tokens(kind):
    torch.manual_seed(0)
    embeds = torch.randn(3, 10, 4)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 2:] = 0  # two real tokens: int(2 * 0.3) = 0 are cut
    out, out_mask = cutoff(embeds, mask, kind, 0.3)
    for row, n_real in enumerate([10, 6, 2]):
        cut = ((mask[row] == 1) & (out_mask[row] == 0)).nonzero().flatten().tolist()
        assert len(cut) == int(n_real * 0.3)
        assert all(i < n_real for i in cut) and out_mask[row, n_real:].sum() == 0
        assert torch.all(out[row, cut] == 0)
        kept = [i for i in range(10) if i not in cut]
        assert torch.equal(out[row, kept], embeds[row, kept])
        if kind == "span" and cut:
            assert cut == list(range(cut[0], cut[0] + len(cut)))


def test_cutoff_loss_is_ce_plus_weighted_ce_and_js_in_two_passes(tiny):
    _, model, batch = tiny
    forward, calls = counting(model)
    loss_fn = TrainingLoss(cutoff_kind="token", cutoff_ratio=0.3, cutoff_ce_weight=0.5, cutoff_js_weight=2.0)
    torch.manual_seed(2)
    terms = loss_fn(forward, model.get_input_embeddings(), batch)
    assert len(calls) == 2
    assert calls[1]["input_ids"] is None and calls[1]["inputs_embeds"].shape == (4, 12, 32)
    assert (calls[1]["attention_mask"].sum(1) < batch["attention_mask"].sum(1)).all()

    torch.manual_seed(2)  # the same dropout and cutoff draws, by hand
    with torch.no_grad():
        original = model(**batch).logits
        embeds, mask = cutoff(
            model.get_input_embeddings()(batch["input_ids"]), batch["attention_mask"], "token", 0.3
        )
        cut = model(inputs_embeds=embeds, attention_mask=mask, labels=batch["labels"]).logits
    labels = batch["labels"]
    expected = hand_ce(original, labels) + 0.5 * hand_ce(cut, labels) + 2.0 * hand_js(original, cut)
    assert terms["cutoff_js"].item() == pytest.approx(hand_js(original, cut), rel=1e-4)
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_regression_consistency_is_mean_squared_difference():
    outputs = iter(
        [
            SimpleNamespace(loss=torch.tensor(1.0), logits=torch.tensor([[1.0], [2.0]])),
            SimpleNamespace(loss=torch.tensor(3.0), logits=torch.tensor([[2.0], [4.0]])),
        ]
    )
    terms = TrainingLoss(regression=True, rdrop_alpha=0.5)(lambda b: next(outputs), None, {})
    assert terms["loss"].item() == pytest.approx(0.5 * (1 + 3) + 0.5 * (1 + 4) / 2)


def test_training_step_uses_the_configured_loss(tiny):
    cfg, model, batch = tiny
    cfg = compose_train(["model=tiny_roberta", "task=rte", "regularizer.rdrop_alpha=0.3"])
    spec = get_task("rte")
    loss_fn = TrainingLoss.from_config(cfg.regularizer, spec.is_regression)
    assert loss_fn == TrainingLoss(rdrop_alpha=0.3) and loss_fn.forward_passes == 2
    module = GlueLoRAModule(model, spec, instantiate(cfg.optimizer), cfg.schedule, training_loss=loss_fn)
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.warns(UserWarning):  # self.log outside a Trainer
            module.training_step({**batch, "idx": torch.arange(4)}, 0)
    finally:
        handle.remove()
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["regularizer.rdrop_alpha=-1"], "rdrop_alpha"),
        (["regularizer.cutoff.kind=feature"], "token or span"),
        (["regularizer.cutoff.kind=span", "regularizer.cutoff.ratio=1.5"], "cutoff.ratio"),
        (["regularizer.cutoff.kind=span", "regularizer.rdrop_alpha=1"], "one regulariser at a time"),
    ],
)
def test_bad_regulariser_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_train(["model=tiny_roberta", *overrides]))


@pytest.mark.parametrize(
    ("override", "new_key"),
    [
        ("train.rdrop_alpha=1.0", "regularizer.rdrop_alpha=1.0"),
        ("train.cutoff.kind=span", "regularizer.cutoff.kind"),
    ],
)
def test_the_old_train_key_is_refused_naming_regularizer(override, new_key):
    """The regularisers moved from train: to the regularizer group; an old override names the new key."""
    with pytest.raises(ConfigError, match=re.escape(new_key)) as err:
        validate(compose_train(["model=tiny_roberta", override]))
    assert "\n" not in str(err.value)


def test_a_run_recorded_under_train_resumes_under_regularizer():
    from glue_lora.training.resume import config_changes

    old = {"train": {"rdrop_alpha": 0.0, "cutoff": {"kind": None}}, "seed": 0}
    new = {"regularizer": {"rdrop_alpha": 0.0, "cutoff": {"kind": None}}, "seed": 0}
    assert config_changes(old, new) == []
    assert config_changes(old, {**new, "regularizer": {"rdrop_alpha": 1.0, "cutoff": {"kind": None}}})


def test_cutoff_run_logs_its_terms(glue_fixtures, token_cache, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            "task=rte",
            f"paths.glue_dir={glue_fixtures}",
            f"data.cache_dir={token_cache}",
            "trainer.max_epochs=1",
            "regularizer.cutoff.kind=span",
            "regularizer.cutoff.ratio=0.2",
        ],
        tmp_path,
    )
    run(cfg)
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    logged = [float(r["train/cutoff_js"]) for r in rows if r.get("train/cutoff_js")]
    assert logged and all(v >= 0 for v in logged)
    assert any(float(r["train/cutoff_ce"]) > 0 for r in rows if r.get("train/cutoff_ce"))


def test_cross_entropy_helper_matches_torch():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    assert hand_ce(logits, labels) == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
