"""Our torchmetrics-based dev metrics against scikit-learn / scipy on random inputs."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from glue_lora.metrics import build_metrics, predictions_from_logits
from glue_lora.tasks import get_task


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
