"""Dev metrics against GLUE's scorer (scikit-learn / scipy): random inputs and every degenerate case."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ConstantInputWarning, pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from glue_lora.data.tasks import get_task
from glue_lora.training.metrics import build_metrics, predictions_from_logits


@pytest.mark.parametrize("task", ["mrpc", "cola", "mnli", "qqp"])
def test_classification_metrics_match_sklearn(task):
    spec = get_task(task)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(300, spec.num_labels, generator=generator)
    targets = torch.randint(0, spec.num_labels, (300,), generator=generator)
    metrics = build_metrics(spec)
    # Feed in three batches, as validation does.
    for chunk in range(3):
        part = slice(chunk * 100, (chunk + 1) * 100)
        metrics.update(predictions_from_logits(spec, logits[part]), targets[part])
    values = {k: float(v) for k, v in metrics.compute().items()}
    preds = logits.argmax(-1).numpy()
    reference = {
        "accuracy": accuracy_score(targets, preds),
        "f1": f1_score(targets, preds) if spec.num_labels == 2 else None,
        "mcc": matthews_corrcoef(targets, preds),
    }
    assert set(values) == set(spec.metrics)
    for name, value in values.items():
        assert value == pytest.approx(reference[name], abs=1e-6)


def test_regression_metrics_match_scipy():
    spec = get_task("stsb")
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(200, generator=generator) * 5
    preds = scores + torch.randn(200, generator=generator)
    metrics = build_metrics(spec)
    metrics.update(predictions_from_logits(spec, preds.unsqueeze(-1)), scores)
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["pearson"] == pytest.approx(pearsonr(preds, scores).statistic, abs=1e-5)
    assert values["spearman"] == pytest.approx(spearmanr(preds, scores).statistic, abs=1e-5)


def score(task: str, preds, labels, chunks: int = 3) -> dict[str, float]:
    spec = get_task(task)
    metrics = build_metrics(spec)
    for p, t in zip(torch.tensor(preds).chunk(chunks), torch.tensor(labels).chunk(chunks), strict=True):
        metrics.update(p, t)
    return {k: float(v) for k, v in metrics.compute().items()}


# CoLA dev's label balance: 721 acceptable of 1,043.
COLA_LABELS = [1] * 721 + [0] * 322


def test_a_constant_predictor_scores_mcc_zero_as_glues_scorer():
    # torchmetrics' MulticlassMatthewsCorrCoef gave 0.0256 here: "CoLA stuck at 0" must read 0.
    for constant in (0, 1):
        values = score("cola", [constant] * len(COLA_LABELS), COLA_LABELS)
        assert values["mcc"] == matthews_corrcoef(COLA_LABELS, [constant] * len(COLA_LABELS)) == 0.0


def test_f1_is_zero_when_the_positive_class_is_never_predicted():
    labels = [1, 0, 1, 1, 0, 1]
    values = score("mrpc", [0] * 6, labels, chunks=2)
    assert values["f1"] == f1_score(labels, [0] * 6, zero_division=0.0) == 0.0
    assert values["accuracy"] == pytest.approx(2 / 6)


def test_a_class_never_predicted_scores_as_sklearn():
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 3, (90,), generator=generator)
    preds = torch.randint(0, 2, (90,), generator=generator)  # class 2 never predicted
    values = score("mnli", preds.tolist(), labels.tolist())
    assert values["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    binary = score("cola", (labels % 2).tolist(), [1] * 90)  # one label only: MCC undefined, 0
    assert binary["mcc"] == matthews_corrcoef([1] * 90, (labels % 2).tolist()) == 0.0


def test_a_constant_regression_output_has_undefined_correlations_as_scipy():
    labels = [0.5, 1.0, 3.2, 4.8, 2.2, 0.0]
    values = score("stsb", [2.5] * 6, labels, chunks=2)
    with pytest.warns(ConstantInputWarning):  # scipy says so; GLUE's scorer reports the NaN
        assert math.isnan(pearsonr([2.5] * 6, labels).statistic)
        assert math.isnan(spearmanr([2.5] * 6, labels).statistic)
    assert math.isnan(values["pearson"]) and math.isnan(values["spearman"])


def test_an_undefined_score_is_never_the_best_evaluation():
    from glue_lora.training.metrics import best_evaluation

    history = [{"dev": {"pearson": float("nan")}}, {"dev": {"pearson": 0.2}}, {"dev": {"pearson": 0.1}}]
    assert best_evaluation(history, "pearson") is history[1]
