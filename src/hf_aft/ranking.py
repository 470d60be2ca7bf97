"""Ranking teachers (`hf-aft rank-teachers`): how much each candidate teacher knows about the task, before any student
training.

Each teacher's features come from `extract_teacher_features` (the same cache as training: ranking and then training
runs each teacher once) and get two scores: the LogME evidence (You et al., ICML 2021: the marginal likelihood of
the labels under Bayesian linear regression on the features, maximised over its two precisions; higher is better)
and a cross-validated logistic-regression probe accuracy. The student's own initial features (its encoder, mean-
pooled, extracted like a teacher) get the same scores, so a teacher that scores below the student has little to
transfer.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .cache import default_cache_dir
from .errors import AFTError
from .features import FEATURES_COLUMN, with_teacher_features
from .teachers import short_name


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-5) -> float:
    """LogME evidence per example, averaged over the classes' one-vs-rest targets (higher: the features explain
    the labels better). One SVD of the features serves every class and every fixed-point iteration."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of F^T F; the other d - k are zero
    k = len(sigma)
    evidences = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(np.float64)
        x2 = (u.T @ y) ** 2  # y's energy along each singular direction
        outside = max(float(y @ y - x2.sum()), 0.0)  # energy no linear map of F can reach
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()  # effective number of parameters
            m2 = (sigma * x2 / (sigma + t) ** 2).sum()  # |m|^2 of the posterior mean
            res2 = (x2 * (t / (sigma + t)) ** 2).sum() + outside  # |y - F m|^2
            alpha, beta = gamma / (m2 + 1e-12), (n - gamma) / (res2 + 1e-12)
            if abs(alpha / beta - t) / t < tol:
                break
        log_det = np.log(alpha + beta * sigma).sum() + (d - k) * np.log(alpha)
        evidence = (d * np.log(alpha) + n * np.log(beta) - log_det - beta * res2 - alpha * m2
                    - n * np.log(2 * np.pi)) / 2
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def check_folds(labels, folds: int) -> None:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(values) < 2:
        raise AFTError("the probe needs at least 2 classes in the labels.")
    if counts.min() < folds:
        raise AFTError(f"class {values[counts.argmin()].item()!r} has {int(counts.min())} examples, fewer than the "
                       f"probe's {folds} folds: lower --folds or add examples.")


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean and sd of a standardised logistic-regression probe's accuracy over stratified folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    check_folds(labels, folds)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(probe, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(scores.mean()), float(scores.std())


def rank_teachers(dataset, labels, teachers: list[str], options, student: str | None = None, folds: int = 5,
                  seed: int = 0, text_column: str = "text", cache_dir: str | None = None) -> list[dict]:
    """Score each teacher (and the student's own initial features, when `student` is given) on `dataset` with no
    student training: one row per candidate with its width, LogME, probe accuracy (mean, sd over `folds`),
    extraction seconds and whether the features came from the cache; sorted by LogME, best first.

    Args:
        dataset: the split training will see (raw texts; the features share training's cache).
        labels: one class id per row.
        options: teacher options (`TeacherArguments` or `AFTConfig`): pooling, batch size, max length...
    """
    labels = np.asarray(labels)
    check_folds(labels, folds)  # before any teacher runs
    cache = Path(cache_dir or default_cache_dir())
    rows = []
    for role, spec in [*(("teacher", t) for t in teachers), *([("student", student)] if student else [])]:
        before = set(cache.glob("teacher-*.arrow"))
        start = time.perf_counter()
        with_features = with_teacher_features(dataset, options, text_column, teachers=[spec])
        seconds = time.perf_counter() - start
        features = np.asarray(with_features.with_format("numpy")[FEATURES_COLUMN], dtype=np.float32)
        mean, sd = probe_accuracy(features, labels, folds, seed)
        rows.append({"name": spec, "role": role, "width": int(features.shape[1]), "logme": logme(features, labels),
                     "probe_accuracy": mean, "probe_accuracy_sd": sd, "extraction_seconds": round(seconds, 2),
                     "cached": not (set(cache.glob("teacher-*.arrow")) - before)})
    return sorted(rows, key=lambda row: -row["logme"])


def verdict(rows: list[dict]) -> str | None:
    """One line when the student's own features score at or above every teacher: there is little to transfer."""
    student = next((row for row in rows if row["role"] == "student"), None)
    teachers = [row for row in rows if row["role"] == "teacher"]
    if student is None or not teachers:
        return None
    if all(student["logme"] >= t["logme"] and student["probe_accuracy"] >= t["probe_accuracy"] for t in teachers):
        return ("verdict: the student's own features score at or above every teacher, so there is little to "
                "transfer: try a larger or more task-specific teacher, or train with --transfer none.")
    return None


def format_table(rows: list[dict], folds: int) -> str:
    lines = [f"{'rank':<5}{'features':<48}{'width':>6}{'LogME':>9}{f'probe acc ({folds}-fold)':>22}"
             f"{'extraction s':>16}"]
    for i, row in enumerate(rows, 1):
        name = short_name(row["name"]) + (" (student)" if row["role"] == "student" else "")
        probe = f"{row['probe_accuracy']:.4f} ± {row['probe_accuracy_sd']:.4f}"
        seconds = f"{row['extraction_seconds']:.1f}" + (" (cache)" if row["cached"] else "")
        lines.append(f"{i:<5}{name[-47:]:<48}{row['width']:>6}{row['logme']:>9.4f}{probe:>22}{seconds:>16}")
    return "\n".join(lines + [line for line in [verdict(rows)] if line])
