"""What `rank_teachers` is given, refused in one line before any teacher runs rather than deep in words.py or
scikit-learn: one split, at least one teacher, at least 2 folds, a known problem type, and labels its probe and
LogME can read (one per row; class ids, multi-hot rows of 0 and 1 or finite targets). Labels given as a column's name
or as a `Labels` (any targets of `load_labelled_splits`) are read as `hf-aft rank-teachers` reads them."""

from __future__ import annotations

import os

import numpy as np

from .data import read_targets
from .dataset_types import check_one_split
from .errors import AFTError
from .option_checks import check_count
from .targets import MULTI, PROBLEM_TYPES, SINGLE, TOKEN


def checked_ranking_inputs(dataset, labels, teachers, folds, problem_type, names, text_column) -> tuple:
    """`rank_teachers`' arguments checked (see its Raises). Returns (labels as arrays, or each sentence's word class
    ids for token classification; teachers as a list; problem type; class names; the column the teachers read)."""
    check_one_split(dataset, "rank_teachers' dataset", "rank_teachers(data['train'], ...)")
    teachers = [os.fspath(teachers)] if isinstance(teachers, (str, os.PathLike)) else list(teachers or [])
    if not teachers or not all(isinstance(t, (str, os.PathLike)) for t in teachers):
        raise AFTError(f"teachers must list at least one teacher (a Hub id or folder) to rank; got {teachers!r}.")
    check_count(folds, "folds", least=2)
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise AFTError(f"unknown problem_type {problem_type!r}: choose one of {', '.join(PROBLEM_TYPES)}.")
    if isinstance(labels, str):  # a column's name: read as hf-aft rank-teachers reads --label_column
        if labels not in dataset.column_names:
            raise AFTError(f"labels={labels!r} names no column of the dataset (it has {dataset.column_names}): name "
                           "its label column, or give one label per row.")
        labels = read_targets(dataset, labels, problem_type, text_column)
    if hasattr(labels, "names") and hasattr(labels, "problem_type"):  # Labels, MultiLabels, RegressionTargets...
        if problem_type not in (None, labels.problem_type):
            raise AFTError(f"problem_type={problem_type!r}, but the labels are {labels.problem_type} ones: leave "
                           "problem_type out (the labels say it).")
        problem_type, names = labels.problem_type, labels.names
        if problem_type == TOKEN:
            labels, text_column = labels.class_ids(dataset), labels.words_column
        else:
            labels = np.asarray(labels.encode(dataset)["labels"])
    problem_type = problem_type or SINGLE
    labels = labels if problem_type == TOKEN else np.asarray(labels)
    check_label_values(labels, len(dataset), problem_type, names)
    return labels, teachers, problem_type, names, text_column


def check_label_values(labels, rows: int, problem_type: str, names) -> None:
    """One label per row, of the kind `problem_type` reads; the first bad row named."""
    if labels is None or not hasattr(labels, "__len__") or getattr(labels, "ndim", 1) == 0:  # (ragged for words)
        raise AFTError("labels is missing or a single value: give one label per row (an array) or the label "
                       "column's name.")
    if len(labels) != rows:
        raise AFTError(f"labels has {len(labels)} rows and the dataset {rows}: give one label per row, in the "
                       "dataset's order (or the label column's name).")
    if problem_type == TOKEN:
        if names is None:
            raise AFTError("token classification is scored in entity F1, which reads the class names: pass names= "
                           "(the class names in id order, e.g. ['O', 'B-PER', 'I-PER']).")
        return
    if labels.dtype == object and any(value is None for value in labels.reshape(-1)):
        row = next(i for i, value in enumerate(labels) if value is None)
        raise AFTError(f"labels has no label at row {row}: drop or fill those rows.")
    if problem_type != SINGLE and labels.dtype.kind not in "biuf":
        raise AFTError(f"{problem_type} labels must be numbers (got {labels.dtype}): give class ids for "
                       "problem_type='single_label_classification'.")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        row = int(np.argwhere(~np.isfinite(labels))[0][0])
        raise AFTError(f"labels hold NaN or inf (first at row {row}): drop or fill those rows.")
    if problem_type == SINGLE and labels.ndim != 1:
        raise AFTError(f"labels are {labels.ndim}-D {list(labels.shape)}, not one class id per row: pass "
                       "problem_type='multi_label_classification' (multi-hot rows) or 'regression' (targets).")
    if problem_type == SINGLE and labels.dtype.kind == "f" and not (labels == np.round(labels)).all():
        raise AFTError("labels hold fractional numbers, not class ids: pass problem_type='regression' to rank "
                       "teachers for a regression, or give class ids.")
    if problem_type == MULTI and (labels.ndim != 2 or not np.isin(labels, (0, 1)).all()):
        raise AFTError("multi-label labels must be multi-hot rows [rows, classes] of 0 and 1: encode them "
                       "(MultiLabels.encode), or give the label column's name.")
