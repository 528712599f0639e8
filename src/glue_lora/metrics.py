"""Dev metrics per task, from torchmetrics, under the names of DESIGN.md's contract."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torchmetrics
from torchmetrics import classification, regression

from glue_lora.tasks import TaskSpec

# Each factory takes the number of labels and returns a metric fed with (predictions, targets):
# class ids for classification, scores for regression.
METRIC_FACTORIES: dict[str, Callable[[int], torchmetrics.Metric]] = {
    "accuracy": lambda n: classification.MulticlassAccuracy(num_classes=n, average="micro"),
    "f1": lambda n: classification.BinaryF1Score(),
    "mcc": lambda n: classification.MulticlassMatthewsCorrCoef(num_classes=n),
    "pearson": lambda n: regression.PearsonCorrCoef(),
    "spearman": lambda n: _spearman(),
}


def _spearman() -> torchmetrics.Metric:
    # It warns that it buffers every prediction: STS-B's dev set is 1,500 scores, a few KB.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*will save all targets and predictions in the buffer")
        return regression.SpearmanCorrCoef()


def build_metrics(spec: TaskSpec) -> torchmetrics.MetricCollection:
    """The task's dev metrics, keyed by contract name."""
    n = max(spec.num_labels, 2)
    return torchmetrics.MetricCollection({m: METRIC_FACTORIES[m](n) for m in spec.metrics})


def predictions_from_logits(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Class ids (classification) or scores (regression) from the model's logits."""
    return logits.squeeze(-1).float() if spec.is_regression else logits.argmax(dim=-1)
