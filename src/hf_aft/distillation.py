"""Distillation targets: one row of log-probabilities over the classes per training row, labelled or not, as a column
`distill_targets` beside the teacher features; the trainer adds `alpha * T^2 * KL(target || student)` (losses.py).

- `probe`: the teachers' linear probe: a multinomial logistic regression (scikit-learn, on standardised, concatenated
  teacher features, its C chosen by cross-validated log-loss) fitted on the labelled rows. A labelled row's target
  comes from the probe of the cross-validation fold that did not see it (out-of-fold), so it is an honest
  prediction, never its own label echoed back; unlabelled rows get the probe fitted on all labelled rows. The fit
  is cached beside the features, keyed by the feature values and labels themselves (a changed teacher or label set
  refits), with its cross-validated accuracy, the accuracy the teachers offer through their features.
- `logits`: a task-tuned teacher (`*ForSequenceClassification`, `*ForImageClassification`) for the same labels,
  run once through the feature path (teachers/, cache.py) with its head; its columns are put in the data's class
  order, its label names checked against the data's.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from .cache import default_cache_dir, main_process_first, store_or_warn, verify
from .errors import AFTError, warn_once
from .features import FEATURES_COLUMN, feature_matrix
from .targets import SINGLE
from .task_probes import (
    MULTI_LABEL_TARGET_C,
    PROBE_CS,
    PROBE_FOLDS,
    SCORE_NAMES,
    TOO_FEW_ROWS_ADVICE,
    as_targets,
    cross_fit_outputs,
    fit_probe_outputs,
    probe_score,
)

logger = logging.getLogger(__name__)

TARGETS_COLUMN = "distill_targets"
CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForImageClassification")
PROBE_VERSION = "3"
# The distillation targets come from the same probe: with the pool, their C chosen on this grid against a fixed C = 1
# moved the student +1.4 to +2.9 points on the party suite at 100 to 1,000 labels (C = 1's targets were below STL
# there; -0.6 once at 2,000), -0.1 to +0.6 on Rotten Tomatoes, +0.0 to +1.0 on BBC headlines, and -0.7 to -1.6 on
# the images, where C = 1 was the more accurate probe (docs/guides/unlabelled-data.md).
TARGET_CS = PROBE_CS


@dataclass
class ProbeFit:
    """Targets (log-probabilities, [rows, classes]; NaN rows: no honest target, see `fit_probe`) for the labelled and
    the unlabelled rows, and the probe's cross-validated accuracy on the labelled rows it could cross-fit (the share
    of out-of-fold predictions that are right)."""

    labeled: np.ndarray
    unlabeled: np.ndarray
    accuracy: float
    folds: int
    from_cache: bool = False
    c: float | None = None  # the probe's chosen inverse L2 strength
    metric: str = "accuracy"  # what `accuracy` holds: micro_f1 (multi-label), pearson (regression)
    scored: int | None = None  # the labelled rows (words, for a per-word probe) `accuracy` is measured over


def probe_at(c: float = 1.0):
    """The teachers' linear probe at inverse L2 strength `c`, unfitted: standardised features and a multinomial
    logistic regression (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _log_proba(probe, features: np.ndarray, num_classes: int) -> np.ndarray:
    """Log-probabilities over all `num_classes` (a class the probe never saw gets log(1e-8))."""
    out = np.full((len(features), num_classes), np.log(1e-8), dtype=np.float32)
    if len(features):
        proba = probe.predict_proba(features)
        out[:, probe.classes_] = np.log(np.clip(proba, 1e-8, None))
    return out - np.logaddexp.reduce(out, axis=1, keepdims=True)


def probe_folds(x: np.ndarray, y: np.ndarray, folds: int, seed: int = 0):
    """The probe's cross-validation folds, (train, held) index pairs: stratified, shuffled with `seed` (the folds
    `cross_fit_path` searches C on and the ranking scores on)."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)


def cross_fit_path(x: np.ndarray, y: np.ndarray, folds: int, seed: int = 0,
                   cs: tuple[float, ...] | None = None) -> tuple[float, np.ndarray]:
    """(chosen C, out-of-fold class probabilities [rows, classes in sorted order] at that C): for each stratified
    fold, the probe of every C in `cs` (default `PROBE_CS`) fitted on the other folds (warm-started along the path,
    smallest C first) predicts the held-out rows; C is the one whose out-of-fold predictions have the lowest
    log-loss (the calibration the distillation targets need; scikit-learn's `LogisticRegressionCV` does the same
    search but keeps no out-of-fold predictions). Every class of `y` needs at least `folds` rows."""
    from sklearn.metrics import log_loss

    classes, cs = np.unique(y), sorted(cs or PROBE_CS)
    out = np.zeros((len(cs), len(y), len(classes)))
    for train, held in probe_folds(x, y, folds, seed):
        probe = probe_at(cs[0])
        probe[-1].warm_start = True  # each C starts from the previous one's solution
        for i, c in enumerate(cs):
            probe[-1].C = c
            out[i, held] = probe.fit(x[train], y[train]).predict_proba(x[held])
    out /= out.sum(-1, keepdims=True)  # predict_proba's rows sum to 1 only up to rounding (log_loss warns)
    losses = [log_loss(y, out[i], labels=classes) for i in range(len(cs))]
    best = int(np.argmin(losses))
    return cs[best], out[best]


def linear_probe(x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = PROBE_FOLDS, c: float | None = None):
    """The teachers' linear probe on features `x` [rows, D] and class ids `y` [rows]: standardised features and a
    multinomial logistic regression (scikit-learn) whose C is chosen by `cross_fit_path`, fitted on all rows. Used
    by `--distill probe` and by the benchmarks' "teacher probe" column, so both report the same classifier. `c`, a C
    already chosen that way on these rows (the distillation targets' `ProbeFit.c`), skips the search."""
    if c is None:
        folds = int(min(folds, np.unique(y, return_counts=True)[1].min()))
        c = cross_fit_path(x, y, folds, seed)[0] if folds >= 2 else 1.0
    return probe_at(c).fit(x, y)


def fit_probe(labeled: np.ndarray, labels: np.ndarray, unlabeled: np.ndarray, num_classes: int, seed: int = 0,
              folds: int = PROBE_FOLDS, cs: tuple[float, ...] | None = None) -> ProbeFit:
    """Cross-fitted probe targets (see the module docstring). `labeled` [L, D], `labels` [L] class ids,
    `unlabeled` [U, D] (U may be 0). A row whose class has a single labelled row has no honest out-of-fold target
    (every fold that leaves it out lacks its class): its target row is NaN, and the distillation term skips it. C is
    chosen from `cs` (default `TARGET_CS`, the grid `PROBE_CS`) by the out-of-fold log-loss of the same folds
    (`cross_fit_path`): a row's target comes from a probe fitted without it, at a C that its label helped choose (one
    number shared by all rows); a single value in `cs` fixes C.

    Raises:
        AFTError: fewer than 2 classes with at least 2 labelled rows (nothing to cross-fit).
    """
    counts = np.bincount(labels, minlength=num_classes)
    fitted = counts[labels] >= 2  # rows that can be cross-fitted
    classes = np.flatnonzero(counts >= 2)
    if len(classes) < 2:
        raise AFTError("probe distillation cross-fits the teachers' probe: it needs at least 2 classes with 2 or "
                       f"more labelled rows each (class counts: {counts.tolist()}); {TOO_FEW_ROWS_ADVICE}")
    folds = int(min(folds, counts[classes].min()))
    c, proba = cross_fit_path(labeled[fitted], labels[fitted], folds, seed, cs or TARGET_CS)
    out_of_fold = np.full((len(labels), num_classes), np.nan, dtype=np.float32)
    rows = np.full((int(fitted.sum()), num_classes), np.log(1e-8), dtype=np.float32)
    rows[:, classes] = np.log(np.clip(proba, 1e-8, None))
    out_of_fold[fitted] = rows - np.logaddexp.reduce(rows, axis=1, keepdims=True)
    accuracy = float((out_of_fold[fitted].argmax(1) == labels[fitted]).mean())
    full = probe_at(c).fit(labeled, labels)
    return ProbeFit(out_of_fold, _log_proba(full, unlabeled, num_classes), accuracy, folds, c=c,
                    scored=int(fitted.sum()))


def fit_task_probe(labeled: np.ndarray, targets: np.ndarray, unlabeled: np.ndarray, problem_type: str,
                   seed: int = 0, folds: int = PROBE_FOLDS) -> ProbeFit:
    """Cross-fitted probe targets of a multi-label or regression student (task_probes.py): `labeled` [L, D],
    `targets` [L, classes] multi-hot rows or [L] / [L, targets] standardised numbers, `unlabeled` [U, D]. The score
    (`ProbeFit.accuracy`) is the out-of-fold micro-F1 or mean Pearson's r (`ProbeFit.metric`).

    Raises:
        AFTError: too few labelled rows to cross-fit.
    """
    folds = int(min(folds, len(labeled) // 2))
    out_of_fold = cross_fit_outputs(labeled, targets, problem_type, folds, seed)
    rest = (fit_probe_outputs(labeled, targets, unlabeled, problem_type, MULTI_LABEL_TARGET_C) if len(unlabeled)
            else np.empty((0, out_of_fold.shape[1])))
    return ProbeFit(as_targets(out_of_fold, problem_type), as_targets(rest, problem_type),
                    probe_score(out_of_fold, targets, problem_type), folds, metric=SCORE_NAMES[problem_type])


def probe_targets(labeled: datasets.Dataset, unlabeled: datasets.Dataset | None, num_classes: int, seed: int = 0,
                  cache_dir: str | os.PathLike | None = None, problem_type: str = SINGLE) -> ProbeFit:
    """`fit_probe` (or `fit_task_probe` for a multi-label or regression student) on the `teacher_features` and
    `labels` columns of `labeled` (and the features of `unlabeled`), cached in `cache_dir` (default: beside the
    teacher features) under a key made of the feature values, the labels, the seed and the probe's settings: a
    second call loads it, a changed feature or label refits."""
    labeled_x = feature_matrix(labeled)
    labels = np.asarray(labeled.select_columns(["labels"]).with_format("numpy")["labels"],
                        dtype=np.int64 if problem_type == SINGLE else np.float32)
    unlabeled_x = feature_matrix(unlabeled) if unlabeled is not None else np.empty((0, labeled_x.shape[1]), np.float32)

    def fit() -> ProbeFit:
        return (fit_probe(labeled_x, labels, unlabeled_x, num_classes, seed) if problem_type == SINGLE
                else fit_task_probe(labeled_x, labels, unlabeled_x, problem_type, seed))

    return cached_fit([labeled_x, labels, unlabeled_x, num_classes, seed, PROBE_FOLDS, TARGET_CS, problem_type], fit,
                      (len(labels), len(unlabeled_x)), cache_dir)


def cached_fit(key_parts: list, fit, rows: tuple[int, int], cache_dir: str | os.PathLike | None = None) -> ProbeFit:
    """`fit()` once per key (the feature values, the labels and the probe's settings in `key_parts`): stored in
    `cache_dir` (default: beside the teacher features), loaded by a later call; `rows` (labelled, unlabelled) are
    recorded beside it."""
    key = Hasher.hash([PROBE_VERSION, *key_parts])
    path = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"probe-{key}.npz"
    with main_process_first():
        if verify(path):  # read without a lock: a read-only cache works
            return _load_fit(path)
        result = fit()
        _store_fit(path, result, *rows)
    logger.info("teacher probe: cross-validated %s %.4f (%d folds, %d labelled rows)", result.metric, result.accuracy,
                result.folds, rows[0])
    return result


def _load_fit(path: Path) -> ProbeFit:
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        labeled = stored["labeled"]  # NaN rows: not cross-fitted, not scored (a fit cached before `scored`)
        scored = meta.get("scored", int(np.isfinite(labeled).all(axis=1).sum()) if labeled.ndim == 2 else None)
        return ProbeFit(labeled, stored["unlabeled"], meta["accuracy"], meta["folds"], True, meta.get("c"),
                        meta.get("metric", "accuracy"), scored)


def _store_fit(path: Path, fit: ProbeFit, rows: int, unlabeled_rows: int) -> None:
    """Cache the fit (a temporary file renamed into place, with its checksum). The probe costs seconds, so a cache
    that cannot take it (read-only, full) only means the next run fits it again: a warning, nothing left behind."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    meta = json.dumps({"accuracy": fit.accuracy, "folds": fit.folds, "rows": rows, "unlabeled_rows": unlabeled_rows,
                       "c": fit.c, "metric": fit.metric, "scored": fit.scored})
    store_or_warn(path, tmp, lambda file: np.savez(file, labeled=fit.labeled, unlabeled=fit.unlabeled,
                                                   meta=np.array(meta)),
                  "the teacher probe was", "the next run fits it again.")


def with_targets(dataset: datasets.Dataset, targets: np.ndarray) -> datasets.Dataset:
    """`dataset` with the column `distill_targets` ([rows, classes] float32 log-probabilities) beside its own."""
    info = dataset.info.description
    if TARGETS_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(TARGETS_COLUMN)
    column = datasets.Dataset.from_dict(
        {TARGETS_COLUMN: list(targets.astype(np.float32))},
        features=datasets.Features({TARGETS_COLUMN: datasets.List(datasets.Value("float32"),
                                                                  length=targets.shape[1])}))
    joined = datasets.concatenate_datasets([dataset, column], axis=1)
    joined.info.description = info
    return joined


def class_order(teacher_labels: dict[int, str], names: list[str], teacher: str) -> list[int]:
    """For each of the data's class names, the task teacher's logit column. Its `id2label` names must be the data's
    (in any order); a teacher with transformers' placeholder names LABEL_0.. is taken in id order when the data's names
    are the ids themselves ("0", "1", ...)."""
    by_name = {str(name): int(i) for i, name in teacher_labels.items()}
    placeholder = all(name == f"LABEL_{i}" for name, i in by_name.items())
    if placeholder and names == [str(i) for i in range(len(names))] and len(by_name) == len(names):
        return list(range(len(names)))
    if set(by_name) == set(names):
        return [by_name[name] for name in names]
    folded = {" ".join(name.casefold().split()): i for name, i in by_name.items()}  # NEG is neg, as a reader says
    wanted = [" ".join(str(name).casefold().split()) for name in names]
    if len(folded) != len(by_name) or set(folded) != set(wanted) or len(set(wanted)) != len(names):
        raise AFTError(f"--distill_teacher {teacher!r} predicts the classes {sorted(by_name)[:10]} but the data's are "
                       f"{names[:10]}: give a teacher tuned for these labels, or use --distill probe.")
    warn_once(logger, f"hf-aft: --distill_teacher {teacher!r}'s classes {sorted(by_name)[:10]} are read as the "
                      f"data's {names[:10]}: the same names but for case and spacing.")
    return [folded[name] for name in wanted]


def task_teacher_order(spec: str, names: list[str], revision: str | None = None, images: bool | None = None
                       ) -> list[int]:
    """For each of the data's classes (`names`), the index of the task teacher's logit for it; checked from the
    teacher's config alone (no weights load), so that a wrong teacher is refused before any teacher runs. `revision`:
    what the spec resolves to, when the caller has it (else resolved here); `images`: whether the data are images
    (None: not checked).

    Raises:
        AFTError: a teacher that cannot be resolved, that is not a classifier (of the data's kind), or whose classes
            are not the data's.
    """
    from .teachers import parse_teacher
    from .teachers.loading import load_config
    from .teachers.spec import resolve_revision

    name, pinned = parse_teacher(spec)
    config = load_config(spec, name, revision or resolve_revision(name, pinned, "distill teacher"), {})
    heads = [a for a in getattr(config, "architectures", None) or [] if a.endswith(CLASSIFIER_SUFFIXES)]
    if not heads:  # a bare encoder's "logits" would come from a head nobody trained
        raise AFTError(f"--distill_teacher {spec!r} is not a classifier (architectures: "
                       f"{getattr(config, 'architectures', None)}): give a *ForSequenceClassification or "
                       "*ForImageClassification model tuned for these labels, or use --distill probe.")
    wanted = None if images is None else CLASSIFIER_SUFFIXES[1] if images else CLASSIFIER_SUFFIXES[0]
    if wanted and not any(head.endswith(wanted) for head in heads):
        kind, data = ("a text", "images") if images else ("an image", "texts")
        raise AFTError(f"--distill_teacher {spec!r} is {kind} classifier ({heads[0]}) and the data are {data}: give "
                       f"a *{wanted} model tuned for these labels, or use --distill probe.")
    if not getattr(config, "id2label", None) or len(config.id2label) != len(names):
        raise AFTError(f"--distill_teacher {spec!r} has {len(getattr(config, 'id2label', None) or {})} classes, the "
                       f"data {len(names)} ({names[:10]}): give a classifier tuned for these labels, or use --distill "
                       "probe.")
    return class_order(config.id2label, names, spec)


def task_teacher_targets(dataset: datasets.Dataset, spec: str, names: list[str], options, text_column: str = "text",
                         image_column: str | None = None, revision: str | None = None) -> np.ndarray:
    """The task teacher's log-softmax logits [rows, classes] over `dataset`, in the data's class order (`names`),
    through the one feature path (each teacher's cache, keyed like features, plus 'logits'). `revision` as for
    `task_teacher_order`."""
    import torch

    from .features import extract_teacher_features, extraction_kwargs

    order = task_teacher_order(spec, names, revision, images=image_column is not None)
    kwargs = {**extraction_kwargs(options), "pooling": "logits", "feature_dtype": "float32"}
    inputs = dataset.select_columns([c for c in (text_column, image_column) if c and c in dataset.column_names])
    with_logits = extract_teacher_features(inputs, [spec], text_column=text_column, image_column=image_column,
                                           **kwargs)
    logits = feature_matrix(with_logits)[:, order]
    return torch.log_softmax(torch.from_numpy(logits), dim=1).numpy()


__all__ = ["FEATURES_COLUMN", "TARGETS_COLUMN", "ProbeFit", "fit_probe", "fit_task_probe", "linear_probe",
           "probe_targets", "task_teacher_targets", "with_targets"]
