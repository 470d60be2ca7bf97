"""The teachers' linear probe for multi-label and regression students (distillation.py fits the single-label one):
the same estimator for the cost report's probe column and for `--distill probe`'s targets.

- multi-label: one logistic regression per class on standardised features (scikit-learn's OneVsRestClassifier,
  C = 1: the single-label probe's search for C by cross-validated log-loss is not measured on multi-label data);
  targets are each class's log-odds, clipped at probabilities 1e-6 and 1 - 1e-6; its score is the micro-F1 of its
  predictions at probability 0.5.
- regression: ridge regression on standardised features, its penalty chosen by leave-one-out (RidgeCV); targets are
  its predictions in the student's (standardised) units; its score is Pearson's r, the mean over targets.

Labelled rows get out-of-fold predictions (K shuffled folds, the probe of the folds that did not see the row), so a
target is an honest prediction, never the row's label echoed back; unlabelled rows get the probe fitted on all of
them.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import AFTError
from .metrics import multi_label_metrics, regression_metrics
from .targets import MULTI, REGRESSION

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))
SCORE_NAMES = {MULTI: "micro_f1", REGRESSION: "pearson"}


# The way out of a cross-fit with too few rows. Without a probe and without a transfer term, unlabelled rows and
# augmented copies have no term to read them (refused elsewhere), so the advice names them too.
TOO_FEW_ROWS_ADVICE = ("add labelled rows, or pass --distill none (with --transfer none, also drop "
                       "--unlabeled_dataset and --augment_copies: no term would read them).")

def probe_estimator(problem_type: str):
    """An unfitted scikit-learn pipeline: standardised features, then the probe of `problem_type` (module
    docstring); `fit(x, y)` takes multi-hot rows (multi-label) or targets [rows] / [rows, targets]."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if problem_type == REGRESSION:
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    if problem_type == MULTI:
        return make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000)))
    raise ValueError(f"no float-target probe for {problem_type!r}")


def probe_outputs(probe, x: np.ndarray, problem_type: str) -> np.ndarray:
    """[rows, outputs]: class probabilities (multi-label) or predicted targets (regression)."""
    if problem_type == MULTI:
        return probe.predict_proba(x)
    return np.asarray(probe.predict(x)).reshape(len(x), -1)


def fit_probe_outputs(x: np.ndarray, y: np.ndarray, eval_x: np.ndarray, problem_type: str) -> np.ndarray:
    """The probe fitted on (x, y), its outputs on `eval_x` (`probe_outputs`). A class that a fit's rows all hold or
    all lack is predicted as that constant (scikit-learn warns; the warning is dropped here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        probe = probe_estimator(problem_type).fit(x, _fit_targets(y, problem_type))
        return probe_outputs(probe, eval_x, problem_type)


def _fit_targets(y: np.ndarray, problem_type: str) -> np.ndarray:
    if problem_type == MULTI:
        return (np.asarray(y) >= 0.5).astype(int)
    y = np.asarray(y, dtype=np.float64)
    return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y


def probe_score(outputs: np.ndarray, y: np.ndarray, problem_type: str) -> float:
    """The probe's score in its task's metric (`SCORE_NAMES`): micro-F1 at 0.5, or the mean Pearson's r."""
    if problem_type == MULTI:
        return multi_label_metrics(outputs, y)["micro_f1"]
    return regression_metrics(outputs, y)["pearson"]


def cross_fit_outputs(x: np.ndarray, y: np.ndarray, problem_type: str, folds: int, seed: int = 0) -> np.ndarray:
    """Out-of-fold probe outputs [rows, outputs] over `folds` shuffled folds (each row predicted by the probe fitted
    on the other folds).

    Raises:
        AFTError: fewer than 2 rows per fold on average (nothing to cross-fit).
    """
    from sklearn.model_selection import KFold

    if len(x) < 2 * max(folds, 2):
        raise AFTError(f"probe distillation cross-fits the teachers' probe over {folds} folds: it needs at least "
                       f"{2 * max(folds, 2)} labelled rows (got {len(x)}); {TOO_FEW_ROWS_ADVICE}")
    out = None
    for train, held in KFold(folds, shuffle=True, random_state=seed).split(x):
        outputs = fit_probe_outputs(x[train], y[train], x[held], problem_type)
        out = np.full((len(x), outputs.shape[1]), np.nan) if out is None else out
        out[held] = outputs
    return out


def as_targets(outputs: np.ndarray, problem_type: str) -> np.ndarray:
    """The distillation targets of probe outputs: log-odds per class (multi-label), the numbers (regression)."""
    if problem_type == MULTI:
        p = np.clip(outputs, 1e-6, 1 - 1e-6)
        return (np.log(p) - np.log1p(-p)).astype(np.float32)
    return outputs.astype(np.float32)
