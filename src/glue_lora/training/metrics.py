"""Dev metrics per task, scored as GLUE's scorer scores them, under the names of DESIGN.md's contract.

GLUE's scorer (the ``glue`` metric that the reference's run_glue.py loads) calls scikit-learn and
scipy on the whole dev set: ``matthews_corrcoef``, ``f1_score``, ``pearsonr`` and ``spearmanr``.
We call the same functions, so the degenerate cases agree too: a constant predictor has MCC 0 (the
"CoLA stuck at 0" failure; torchmetrics' MCC gives 0.0256 on CoLA dev there), F1 is 0 when the
positive class is never predicted, and Pearson/Spearman of a constant regression output are NaN
(undefined), which never counts as a best evaluation. Predictions and labels are gathered across
processes (torchmetrics' ``cat`` reduction) before scoring.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchmetrics
from torchmetrics.utilities import dim_zero_cat

from glue_lora.data.tasks import TaskSpec


def _accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float((preds == labels).mean())


def _f1(preds: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true=labels, y_pred=preds, zero_division=0.0))


def _mcc(preds: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, preds))


def _pearson(preds: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import pearsonr

    return float(pearsonr(preds, labels)[0])


def _spearman(preds: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(preds, labels)[0])


# Each scorer takes (predictions, labels) as numpy arrays: class ids, or scores for regression.
SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
}


class GlueScore(torchmetrics.Metric):
    """One GLUE metric over all the rows seen since the last reset."""

    full_state_update = False

    def __init__(self, name: str) -> None:
        super().__init__()
        self.scorer = SCORERS[name]
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, labels: torch.Tensor) -> None:
        self.preds.append(preds.detach())
        self.labels.append(labels.detach())

    def compute(self) -> torch.Tensor:
        preds = dim_zero_cat(self.preds).cpu().double().numpy()
        labels = dim_zero_cat(self.labels).cpu().double().numpy()
        with warnings.catch_warnings():  # the degenerate cases above warn; their values are GLUE's
            warnings.simplefilter("ignore")
            return torch.tensor(self.scorer(preds, labels), dtype=torch.float64)


def build_metrics(spec: TaskSpec) -> torchmetrics.MetricCollection:
    """The task's dev metrics, keyed by contract name."""
    return torchmetrics.MetricCollection({m: GlueScore(m) for m in spec.metrics}, compute_groups=False)


def predictions_from_logits(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Class ids (classification) or scores (regression) from the model's logits."""
    return logits.squeeze(-1).float() if spec.is_regression else logits.argmax(dim=-1)


def best_evaluation(history: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The history entry with the best dev ``metric`` (the paper's protocol reads this one)."""

    # The first of equal scores wins, as in ModelCheckpoint (which replaces only on improvement);
    # an undefined score (NaN: Pearson of a constant output) is never the best, as there.
    def rank(item: tuple[int, dict[str, Any]]) -> tuple[float, int]:
        score = item[1]["dev"][metric]
        return (score if score == score else float("-inf"), -item[0])

    return max(enumerate(history), key=rank)[1]
