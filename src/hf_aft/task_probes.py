"""The teachers' linear probe for multi-label and regression students (distillation.py fits the single-label one):
the same estimator for the cost report's probe column and for `--distill probe`'s targets (multi-label: each at its
own C, below).

- multi-label: one logistic regression per class on standardised features (what scikit-learn's OneVsRestClassifier
  fits). The probe hf-aft reports (the cost report, rank-teachers) has its inverse L2 strength C shared by the
  classes and chosen on `PROBE_CS` by the out-of-fold binary log-loss, as the single-label probe's C is
  (`choose_c`); the distillation targets keep C = 1 (`MULTI_LABEL_TARGET_C`, measured below); targets are each
  class's log-odds, clipped at probabilities 1e-6 and 1 - 1e-6; its score is the micro-F1 of its predictions at
  probability 0.5.
- regression: ridge regression on standardised features, its penalty chosen by leave-one-out (RidgeCV); targets are
  its predictions in the student's (standardised) units; its score is Pearson's r, the mean over targets.

Labelled rows get out-of-fold predictions (K shuffled folds, the probe of the folds that did not see the row), so a
target is an honest prediction, never the row's label echoed back; unlabelled rows get the probe fitted on all of
them.
"""

from __future__ import annotations

import numpy as np

from .errors import AFTError
from .metrics import multi_label_metrics, regression_metrics
from .targets import MULTI, REGRESSION

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))
PROBE_FOLDS = 5
# The probes' inverse L2 strength C, chosen per fit by cross-validated log-loss over this grid (on standardised
# features), for single-label (distillation.py) and multi-label probes. A fixed C = 1 (scikit-learn's default) is
# least regularised where the rows number about the features (n ~ d): on Rotten Tomatoes with mpnet (768 features)
# its test accuracy fell from 0.826 at 100 labels to 0.778 at 2,000; chosen by cross-validation it rose from 0.83 to
# 0.85 (docs/guides/unlabelled-data.md). Multi-label, on the NRC emotion lexicon (bench/lexicons.py, mpnet, 10
# labels, 300 labelled words) the chosen C (0.003-0.01) scored 0.573 test micro-F1 against C = 1's 0.558, its
# out-of-fold binary log-loss 0.405 against 0.708.
PROBE_CS = tuple(float(c) for c in np.logspace(-4, 0, 9))  # to C = 1: larger C costs lbfgs the most
# ...but a student distilled from those calibrated targets predicted fewer labels: AFT + distillation + 2,000
# unlabelled words at 300 labels fell to 0.478 micro-F1 (-3.2 points against STL, 3 seeds) from 0.516 (+0.7) with
# the targets at C = 1, so the multi-label targets keep C = 1.
MULTI_LABEL_TARGET_C = 1.0
SCORE_NAMES = {MULTI: "micro_f1", REGRESSION: "pearson"}


# The way out of a cross-fit with too few rows. Without a probe and without a transfer term, unlabelled rows and
# augmented copies have no term to read them (refused elsewhere), so the advice names them too.
TOO_FEW_ROWS_ADVICE = ("add labelled rows, or pass --distill none (with --transfer none, also drop "
                       "--unlabeled_dataset and --augment_copies: no term would read them).")


def _class_probabilities(x: np.ndarray, y: np.ndarray, eval_x: np.ndarray, cs: tuple[float, ...]) -> np.ndarray:
    """[len(cs), eval rows, classes]: each class's logistic regression (standardised features) fitted on (x, multi-hot
    y) at each C of `cs` (warm-started along the path), its probability on `eval_x`. A class that every row of `x`
    holds, or none, is predicted as that constant (as OneVsRestClassifier does)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    x, eval_x = scaler.transform(x), scaler.transform(eval_x)
    out = np.empty((len(cs), len(eval_x), y.shape[1]))
    for k in range(y.shape[1]):
        if y[:, k].min() == y[:, k].max():
            out[:, :, k] = y[0, k]
            continue
        probe = LogisticRegression(max_iter=2000, warm_start=True)
        for i, c in enumerate(cs):
            probe.C = c
            out[i, :, k] = probe.fit(x, y[:, k]).predict_proba(eval_x)[:, 1]
    return out


def fit_probe_outputs(x: np.ndarray, y: np.ndarray, eval_x: np.ndarray, problem_type: str,
                      c: float | None = None) -> np.ndarray:
    """The probe fitted on (x, y), its outputs on `eval_x`: class probabilities [rows, classes] (multi-label, at `c`,
    chosen on (x, y) by `choose_c` when None) or predicted targets [rows, targets] (regression)."""
    y = _fit_targets(y, problem_type)
    if problem_type == MULTI:
        c = choose_c(x, y, min(PROBE_FOLDS, len(x) // 2))[0] if c is None and len(x) >= 4 else (c or 1.0)
        return _class_probabilities(x, y, eval_x, (c,))[0]
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(x, y)
    return np.asarray(probe.predict(eval_x)).reshape(len(eval_x), -1)


def choose_c(x: np.ndarray, y: np.ndarray, folds: int, seed: int = 0,
             cs: tuple[float, ...] = PROBE_CS) -> tuple[float, np.ndarray]:
    """(C, out-of-fold class probabilities [rows, classes] at that C) of the multi-label probe: per shuffled fold,
    the probes of every C in `cs` fitted on the other folds predict the held-out rows; C is the one whose
    predictions have the lowest mean binary log-loss against the multi-hot `y` (a single value in `cs` fixes C)."""
    from sklearn.model_selection import KFold

    y = _fit_targets(y, MULTI)
    out = np.empty((len(cs), *y.shape))
    for train, held in KFold(folds, shuffle=True, random_state=seed).split(x):
        out[:, held] = _class_probabilities(x[train], y[train], x[held], cs)
    p = np.clip(out, 1e-6, 1 - 1e-6)
    losses = -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=(1, 2))
    best = int(np.argmin(losses))
    return cs[best], out[best]


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


def cross_fit_outputs(x: np.ndarray, y: np.ndarray, problem_type: str, folds: int,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold probe outputs [rows, outputs] over `folds` shuffled folds (each row predicted by the probe fitted
    on the other folds): the distillation targets' probe (multi-label at `MULTI_LABEL_TARGET_C`).

    Raises:
        AFTError: fewer than 2 rows per fold on average (nothing to cross-fit).
    """
    from sklearn.model_selection import KFold

    if len(x) < 2 * max(folds, 2):
        raise AFTError(f"probe distillation cross-fits the teachers' probe over {folds} folds: it needs at least "
                       f"{2 * max(folds, 2)} labelled rows (got {len(x)}); {TOO_FEW_ROWS_ADVICE}")
    if problem_type == MULTI:
        return choose_c(x, y, folds, seed, (MULTI_LABEL_TARGET_C,))[1]
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
