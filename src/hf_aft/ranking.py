"""Ranking teachers (`hf-aft rank-teachers`): how much each candidate teacher knows about the task, before any student
training.

Each teacher's features come from `extract_teacher_features` (the same cache as training: ranking and then training
runs each teacher once) and get two scores: the LogME evidence (You et al., ICML 2021: the marginal likelihood of
the labels under Bayesian linear regression on the features, maximised over its two precisions; higher is better)
and a cross-validated linear probe's score. The student's own initial features (its encoder, mean-pooled, extracted
like a teacher) get the same scores, so a teacher that scores below the student has little to transfer.

The task decides the targets LogME explains and the probe: one-hot classes and a logistic-regression probe scored in
accuracy (single-label); multi-hot rows, each class's column explained as LogME explains a one-hot column, and the
one-vs-rest probe scored in micro-F1 (multi-label); the standardised targets (LogME's regression case) and a ridge
probe scored in Pearson's r (regression). The probes are the cost report's and `--distill probe`'s (task_probes.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .cache import default_cache_dir
from .errors import AFTError
from .features import FEATURES_COLUMN, say_if_copy, teacher_infos_of
from .ranking_inputs import checked_ranking_inputs
from .targets import MULTI, REGRESSION, SINGLE, TOKEN
from .task_probes import SCORE_NAMES, choose_c, fit_probe_outputs, probe_score
from .teachers import short_name
from .word_features import with_word_or_teacher_features


def target_columns(labels: np.ndarray, problem_type: str = SINGLE) -> np.ndarray:
    """[rows, columns] float64 targets LogME explains: one-hot classes (class ids [rows]), the multi-hot rows as
    given, or each regression target standardised (mean 0, sd 1; a constant target stays 0)."""
    labels = np.asarray(labels, dtype=np.float64 if problem_type != SINGLE else None)
    if problem_type == SINGLE:
        return (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
    columns = labels.reshape(len(labels), -1)
    if problem_type == REGRESSION:
        sd = columns.std(0)
        columns = (columns - columns.mean(0)) / np.where(sd > 0, sd, 1.0)
    return columns


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-5,
          problem_type: str = SINGLE) -> float:
    """LogME evidence per example, averaged over the target columns (`target_columns`: the classes' one-vs-rest
    targets, multi-hot columns or standardised regression targets; higher: the features explain the labels better).
    One SVD of the features serves every column and every fixed-point iteration."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of F^T F; the other d - k are zero
    k = len(sigma)
    evidences = []
    for y in target_columns(labels, problem_type).T:
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


def check_folds(labels, folds: int, problem_type: str = SINGLE, names: list[str] | None = None) -> None:
    """Enough rows for the probe's folds: `folds` per class (single-label; a class named from `names` when given),
    a sentence per fold (token classification), two rows per fold otherwise."""
    if problem_type == TOKEN:
        if len(labels) < folds:
            raise AFTError(f"the probe's {folds} folds need at least {folds} sentences (got {len(labels)}): lower "
                           "--folds or add sentences.")
        return
    if problem_type != SINGLE:
        if len(labels) < 2 * folds:
            raise AFTError(f"the probe's {folds} folds need at least {2 * folds} examples (got {len(labels)}): lower "
                           "--folds or add examples.")
        return
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(values) < 2:
        raise AFTError("the probe needs at least 2 classes in the labels.")
    if counts.min() < folds:
        few = values[counts.argmin()].item()
        name = names[few] if names is not None and isinstance(few, int) and 0 <= few < len(names) else few
        fewest = int(counts.min())
        raise AFTError(f"class {name!r} has {fewest} example{'' if fewest == 1 else 's'}, fewer than the probe's "
                       f"{folds} folds: lower --folds or add examples.")


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """The out-of-fold accuracy over all rows (as the card reports it: with unequal folds a mean of the folds' scores
    differs from it) and its sd over the stratified folds, of the teachers' linear probe, the one `hf-aft train`
    distils from and reports (`distillation.cross_fit_path`: standardised logistic regression, C chosen by the
    out-of-fold log-loss of the same folds, so one number of nine is chosen on the rows it is scored on). A fixed
    C = 1 is least regularised where the rows number about the features: on Rotten Tomatoes with mpnet (768
    features) it scored 6.5 points below this probe on 2,000 texts, and a ranking would understate a wide teacher."""
    from .distillation import cross_fit_path, probe_folds

    labels = np.asarray(labels)
    check_folds(labels, folds)
    right = np.unique(labels)[cross_fit_path(features, labels, folds, seed)[1].argmax(1)] == labels
    scores = [right[held].mean() for _, held in probe_folds(features, labels, folds, seed)]
    return float(right.mean()), float(np.std(scores))


def _fit_predict(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray) -> np.ndarray:
    """The per-word probe of token classification fitted and applied (class ids): standardised logistic regression
    at C = 1 (scikit-learn; the search for C is not measured on words)."""
    from .distillation import probe_at

    return probe_at(1.0).fit(train_x, train_y).predict(eval_x)


def word_scores(with_features, rows: list[list[int]], names: list[str], folds: int = 5,
                seed: int = 0) -> tuple[float, float, float]:
    """(LogME over the words the features saw, and the mean and sd over sentence folds of a per-word probe's entity
    F1, cost.word_probe_f1) of per-word features (token classification); `rows` are each sentence's class ids."""
    from sklearn.model_selection import GroupKFold

    from .cost import word_probe_f1
    from .word_features import word_matrix

    x, counts = word_matrix(with_features)
    y = np.concatenate([np.asarray(row, dtype=np.int64) for row in rows])
    seen = np.isfinite(x).all(axis=1)
    sentence = np.repeat(np.arange(len(counts)), counts)
    f1 = [word_probe_f1(x[train], y[train], x[held], [rows[i] for i in np.unique(sentence[held])], names,
                        _fit_predict)
          for train, held in GroupKFold(folds, shuffle=True, random_state=seed).split(x, y, sentence)]
    return logme(x[seen], y[seen]), float(np.mean(f1)), float(np.std(f1))


def probe_scores(features: np.ndarray, labels: np.ndarray, problem_type: str, folds: int = 5,
                 seed: int = 0) -> tuple[float, float]:
    """Mean and sd over shuffled folds of the task's probe score (task_probes.py: micro-F1 or Pearson's r) for a
    multi-label or regression task; `probe_accuracy` for single-label."""
    if problem_type == SINGLE:
        return probe_accuracy(features, labels, folds, seed)
    from sklearn.model_selection import KFold

    labels = np.asarray(labels, dtype=np.float64)
    split = list(KFold(folds, shuffle=True, random_state=seed).split(features))
    if problem_type == MULTI:  # out-of-fold at the C these folds choose (the single-label probe's search)
        out_of_fold = choose_c(features, labels, folds, seed)[1]
        scores = [probe_score(out_of_fold[held], labels[held], problem_type) for _, held in split]
    else:
        scores = [probe_score(fit_probe_outputs(features[train], labels[train], features[held], problem_type),
                              labels[held], problem_type) for train, held in split]
    return float(np.nanmean(scores)), float(np.nanstd(scores))


def rank_teachers(dataset, labels, teachers: list[str], options, student: str | None = None, folds: int = 5,
                  seed: int = 0, text_column: str = "text", cache_dir: str | None = None,
                  problem_type: str | None = None, names: list[str] | None = None,
                  image_column: str | None = None) -> list[dict]:
    """Score each teacher (and the student's own initial features, when `student` is given) on `dataset` with no
    student training: one row per candidate with its width, LogME, probe score (mean, sd over `folds`, in
    `probe_metric`; also as `probe_accuracy` for single-label), extraction seconds and whether the features came from
    the cache; sorted by LogME, best first.

    Args:
        dataset: the split training will see (one `datasets.Dataset` of raw texts; the features share training's
            cache).
        labels: the name of `dataset`'s label column, read as `hf-aft rank-teachers` reads `--label_column` (its
            problem type inferred, or `problem_type`); a `Labels` (or the other targets of `load_labelled_splits`),
            which encodes `dataset` and says the problem type and class names; or arrays, one per row: a class id
            (single-label); a multi-hot row [rows, classes] of 0 and 1 (multi-label); a finite target, [rows] or
            [rows, targets] (regression); each sentence's word class ids (token classification, whose features are
            per word and whose probe is scored in entity F1 over sentence folds, with `names` the class names).
        teachers: Hub ids or folders (one as a string), at least one.
        options: teacher options (`TeacherArguments` or `AFTConfig`): pooling, batch size, max length...
        folds: the probe's cross-validation folds, at least 2.
        problem_type: transformers' name of the task (targets.py); None: the labels' own, single-label for arrays.
        image_column: the column of images, for image teachers (and an image student), else None (texts).

    Raises:
        AFTError: before any teacher runs: a dataset that is not one split, no teachers, `folds` < 2, an unknown
            problem type, labels of another length than the dataset or not of its kind (fractional class ids, NaN
            targets), too few rows per class for the folds; then a teacher that cannot be loaded or run.
    """
    labels, teachers, problem_type, names, text_column = checked_ranking_inputs(
        dataset, labels, teachers, folds, problem_type, names, text_column)
    check_folds(labels, folds, problem_type, names)  # before any teacher runs
    metric = "f1" if problem_type == TOKEN else SCORE_NAMES.get(problem_type, "accuracy")
    cache = Path(cache_dir or default_cache_dir())
    rows, seen = [], []
    for role, spec in [*(("teacher", t) for t in teachers), *([("student", student)] if student else [])]:
        before = set(cache.glob("teacher-*.arrow"))
        start = time.perf_counter()
        with_features = with_word_or_teacher_features(dataset, options, text_column, image_column, teachers=[spec])
        seconds = time.perf_counter() - start
        if role == "teacher":  # a copy under another name ranks as a twin
            info = teacher_infos_of(with_features)[0]
            say_if_copy(spec, info.revision, info.pooling, seen)
        if problem_type == TOKEN:
            evidence, mean, sd = word_scores(with_features, labels, names, folds, seed)
            width = sum(info.dim for info in teacher_infos_of(with_features))
        else:
            features = np.asarray(with_features.with_format("numpy")[FEATURES_COLUMN], dtype=np.float32)
            mean, sd = probe_scores(features, labels, problem_type, folds, seed)
            evidence, width = logme(features, labels, problem_type=problem_type), features.shape[1]
        row = {"name": spec, "role": role, "width": int(width), "logme": evidence, "probe_metric": metric,
               "probe_score": mean, "probe_score_sd": sd, "extraction_seconds": round(seconds, 2),
               "cached": not (set(cache.glob("teacher-*.arrow")) - before)}
        if problem_type == SINGLE:
            row.update(probe_accuracy=mean, probe_accuracy_sd=sd)
        rows.append(row)
    return sorted(rows, key=lambda row: -row["logme"])


def verdict(rows: list[dict]) -> str | None:
    """One line when the student's own features score at or above every teacher: there is little to transfer."""
    student = next((row for row in rows if row["role"] == "student"), None)
    teachers = [row for row in rows if row["role"] == "teacher"]
    if student is None or not teachers:
        return None
    if all(student["logme"] >= t["logme"] and student["probe_score"] >= t["probe_score"] for t in teachers):
        return ("verdict: the student's own features score at or above every teacher, so there is little to "
                "transfer: try a larger or more task-specific teacher, or train with --transfer none.")
    return None


def format_table(rows: list[dict], folds: int) -> str:
    shown = {"accuracy": "acc", "micro_f1": "micro-F1", "pearson": "r", "f1": "entity F1"}
    metric = shown[rows[0]["probe_metric"]] if rows else "acc"
    lines = [f"{'rank':<5}{'features':<48}{'width':>6}{'LogME':>9}{f'probe {metric} ± sd ({folds} folds)':>32}"
             f"{'extraction s':>16}"]
    for i, row in enumerate(rows, 1):
        name = short_name(row["name"]) + (" (student)" if row["role"] == "student" else "")
        probe = f"{row['probe_score']:.4f} ± {row['probe_score_sd']:.4f}"
        seconds = f"{row['extraction_seconds']:.1f}" + (" (cache)" if row["cached"] else "")
        lines.append(f"{i:<5}{name[-47:]:<48}{row['width']:>6}{row['logme']:>9.4f}{probe:>32}{seconds:>16}")
    return "\n".join(lines + [line for line in [verdict(rows)] if line])
