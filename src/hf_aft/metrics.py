"""Accuracy and macro-F1 as an `evaluate` metric defined here, so evaluation works offline
(`evaluate.load("accuracy")` fetches a script from the Hub)."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score


class ClassificationMetrics(evaluate.Metric):
    """accuracy and macro_f1 of integer predictions against integer references."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy and macro-averaged F1 for single-label classification.",
            citation="",
            inputs_description="predictions and references: lists of class ids.",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, average="macro")),
        }


REPORTED_METRICS = ("accuracy", "macro_f1", "loss")  # what an hf-aft evaluation logs (eval_ + name)


def compute_classification_metrics(eval_prediction) -> dict[str, float]:
    """`compute_metrics` for `Trainer`: logits -> argmax -> accuracy and macro-F1."""
    return RecordedMetrics()(eval_prediction)


class RecordedMetrics:
    """`compute_classification_metrics` that keeps the last evaluation's predicted class ids and labels
    (`predictions`, `labels`: numpy [rows], in the eval dataset's order), for the per-group report."""

    predictions: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __call__(self, eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        self.predictions, self.labels = np.argmax(logits, axis=-1), np.asarray(labels)
        return ClassificationMetrics().compute(predictions=self.predictions, references=self.labels)
