"""Accuracy and macro-F1 as an `evaluate` metric defined here, so evaluation works offline
(`evaluate.load("accuracy")` fetches a script from the Hub); the metrics of the other problem types (targets.py), the
entity F1 of token classification through the `seqeval` package itself (not `evaluate.load("seqeval")`, which fetches
a script from the Hub)."""

from __future__ import annotations

import logging

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from .errors import AFTError

logger = logging.getLogger(__name__)


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
# ...per problem type (targets.py); a regression's lower-is-better metrics are marked by `greater_is_better`
METRICS_BY_PROBLEM_TYPE = {"single_label_classification": REPORTED_METRICS,
                           "multi_label_classification": ("micro_f1", "macro_f1", "subset_accuracy", "loss"),
                           "regression": ("mse", "mae", "pearson", "spearman", "loss"),
                           "token_classification": ("f1", "precision", "recall", "accuracy", "loss")}
_CHUNK_PREFIXES = ("B-", "I-", "E-", "S-", "L-", "U-")


def multi_label_metrics(scores: np.ndarray, references: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """micro- and macro-averaged F1 and subset accuracy (every class of the row right) of sigmoid `scores` [rows,
    classes] decided at `threshold`, against multi-hot `references` (scikit-learn's f1_score). Macro-F1 averages
    over the classes that a reference or a prediction holds, as single-label macro-F1 does: a class no row names and
    none is predicted (a ClassLabel name no training row has, say) has no F1 to count, not one of 0."""
    predicted, references = (scores >= threshold).astype(int), (np.asarray(references) >= 0.5).astype(int)
    present = np.flatnonzero((predicted | references).any(axis=0))
    return {"micro_f1": float(f1_score(references, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(references, predicted, average="macro", labels=present, zero_division=0))
            if present.size else 0.0,
            "subset_accuracy": float((predicted == references).all(axis=1).mean())}


def regression_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """Mean squared and absolute error (in the targets' units), Pearson's and Spearman's correlation (scipy; NaN
    when either side is constant), of `predictions` against `references` ([rows], or [rows, targets] with several
    targets: the errors over every number, the correlations the mean of each target's)."""
    from scipy.stats import pearsonr, spearmanr

    references = np.asarray(references, dtype=np.float64).reshape(len(references), -1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(references.shape)

    def correlation(function) -> float:
        if any(np.ptp(side[:, j]) == 0 for side in (predictions, references) for j in range(references.shape[1])):
            return float("nan")
        return float(np.mean([function(predictions[:, j], references[:, j])[0] for j in range(references.shape[1])]))

    return {"mse": float(np.mean((predictions - references) ** 2)),
            "mae": float(np.mean(np.abs(predictions - references))),
            "pearson": correlation(pearsonr), "spearman": correlation(spearmanr)}


def entity_tags(names: list[str]) -> list[str]:
    """The class names as seqeval reads them: a BIO/IOB2 tag set (every name `O` or `B-`/`I-`/`E-`/`S-`... + type)
    as it is; any other tag set (part-of-speech tags, say) with each name but `O` made a one-token chunk (`B-name`),
    so that precision, recall and F1 count tokens of each class."""
    if all(name == "O" or name.startswith(_CHUNK_PREFIXES) for name in names):
        return list(names)
    return [name if name == "O" else f"B-{name}" for name in names]


def token_metrics(predictions: np.ndarray, references: np.ndarray, names: list[str]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (seqeval 1.2.2's default, conlleval-compatible chunking) and token
    accuracy, over the labelled positions of `predictions` and `references` ([rows, tokens] class ids; -100 marks a
    position that is not a word's first sub-token, or padding). Sources: Nakayama, seqeval (github chakki-works);
    Tjong Kim Sang and De Meulder, CoNLL-2003."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    tags = entity_tags(names)
    keep = np.asarray(references) != -100
    true = [[tags[t] for t in row[mask]] for row, mask in zip(np.asarray(references), keep, strict=True)]
    pred = [[tags[t] for t in row[mask]] for row, mask in zip(np.asarray(predictions), keep, strict=True)]
    options = {"zero_division": 0}
    return {"f1": float(f1_score(true, pred, **options)), "precision": float(precision_score(true, pred, **options)),
            "recall": float(recall_score(true, pred, **options)),
            "accuracy": float((np.asarray(predictions)[keep] == np.asarray(references)[keep]).mean())
            if keep.any() else float("nan")}


def compute_metrics_for(labels):
    """The `compute_metrics` of a run's targets (`data.Labels`, `targets.MultiLabels` or `targets.RegressionTargets`):
    `RecordedMetrics` for one class per row; a multi-label head's sigmoid decided at the targets' threshold; a
    regression's predictions and targets back in the data's units (undoing the targets' standardisation)."""
    if labels.problem_type == "single_label_classification":
        return RecordedMetrics()

    def compute(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float64)
        if labels.problem_type == "token_classification":  # padding across batches is -100 in both
            return token_metrics(logits.argmax(-1), eval_prediction.label_ids, labels.names)
        if labels.problem_type == "regression":
            std, mean = np.asarray(labels.std), np.asarray(labels.mean)  # one per target with several
            references = np.asarray(eval_prediction.label_ids, dtype=np.float64)
            return regression_metrics(logits.reshape(references.shape) * std + mean, references * std + mean)
        return multi_label_metrics(1 / (1 + np.exp(-logits)), eval_prediction.label_ids, labels.threshold)

    compute.targets = labels  # AFTTrainer checks that the sets' targets are on the scale these metrics undo
    return compute


def compute_classification_metrics(eval_prediction) -> dict[str, float]:
    """`compute_metrics` for `Trainer` of a single-label student: logits [rows, classes] -> argmax -> accuracy and
    macro-F1. Multi-label, regression and token-classification students take `compute_metrics_for(labels)`.

    Raises:
        AFTError: predictions that are not one row of class logits per label (another problem type's)."""
    predictions = eval_prediction.predictions
    predictions = predictions[0] if isinstance(predictions, tuple) else predictions
    if np.ndim(predictions) != 2 or np.ndim(eval_prediction.label_ids) != 1 or np.shape(predictions)[1] < 2:
        raise AFTError(f"compute_classification_metrics scores single-label students (logits [rows, classes], one "
                       f"class id per row), and got logits of shape {np.shape(predictions)} and labels of shape "
                       f"{np.shape(eval_prediction.label_ids)}: pass compute_metrics=compute_metrics_for(labels) "
                       "(the Labels or targets of load_labelled_splits).")
    return RecordedMetrics()(eval_prediction)


class RecordedMetrics:
    """`compute_classification_metrics` that keeps the last evaluation's predicted class ids and labels
    (`predictions`, `labels`: numpy [rows], in the eval dataset's order), for the per-group report."""

    predictions: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __call__(self, eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = _class_ids(np.asarray(logits), np.asarray(labels))
        self.predictions, self.labels = np.argmax(logits, axis=-1), labels
        scored = labels != IGNORED  # transformers' ignore index: the loss skips such rows, and so do the metrics
        return ClassificationMetrics().compute(predictions=self.predictions[scored], references=labels[scored])


IGNORED = -100  # the label transformers' losses ignore


def _class_ids(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`labels` as int class ids beside `logits` [rows, classes], or one line saying why they cannot be scored."""
    if len(logits) != len(labels) or not (labels != IGNORED).any():
        raise AFTError(f"{len(logits)} rows of logits and {len(labels)} labels, {int((labels != IGNORED).sum())} "
                       "of them scored (not -100): give one label per row and at least one to score.")
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not np.all(
            np.isfinite(labels) & (labels == np.round(labels)))):
        raise AFTError("single-label metrics take class ids, and the labels hold fractions, NaN or text: give integer "
                       "class ids (a regression or soft labels take compute_metrics_for(labels)).")
    outside = sorted({int(v) for v in labels if v != IGNORED and not 0 <= v < logits.shape[-1]})
    if outside:
        raise AFTError(f"labels {outside[:5]} are outside the student's {logits.shape[-1]} classes (0 to "
                       f"{logits.shape[-1] - 1}; -100 marks a row not scored): re-encode or drop those rows.")
    broken = int(np.isnan(logits[labels != IGNORED]).any(axis=-1).sum())
    if broken:
        raise AFTError(f"the student's logits are NaN for {broken} of {len(logits)} rows: the model is broken (a "
                       "diverged run, or weights that did not load); no accuracy is reported for it.")
    return labels.astype(np.int64)


def metric_name(metric: str) -> str:
    """A metric key as prose: micro_f1 -> micro-F1."""
    return metric.replace("_", "-").replace("f1", "F1")


def say_below_majority(eval_accuracy: float | None, train_labels, eval_labels, names) -> None:
    """A single-label student no more accurate than always answering the training split's most frequent class has
    not learned the task (it may predict one class everywhere): one warning, since its card would otherwise read as
    a result."""
    if eval_accuracy is None or not len(train_labels) or not len(eval_labels):
        return
    classes, counts = np.unique(np.asarray(train_labels), return_counts=True)
    majority = classes[counts.argmax()]
    baseline = float(np.mean(np.asarray(eval_labels) == majority))
    if eval_accuracy <= baseline:
        logger.warning(f"hf-aft: the student's eval accuracy {eval_accuracy:.4f} is no better than always answering "
                       f"the training split's most frequent class {names[int(majority)]!r} ({baseline:.4f}): it has "
                       "not learned the task. Train longer or at another --learning_rate, or check the labels.")
