"""The validation split `--beta auto` compares candidates on: the dataset's own (`check_given`), or one held out of the
training data, stratified by label (`split_validation`; `strata` for multi-label and regression targets); refused
when too small to compare anything (fewer than `MIN_VALIDATION` examples, or, held out, `MIN_PER_CLASS` of a
class)."""

from __future__ import annotations

import math

import numpy as np

from .errors import AFTError

DEFAULT_VALIDATION_FRACTION = 0.15
MIN_VALIDATION, MIN_PER_CLASS = 20, 2


def split_validation(dataset, fraction: float, seed: int, label_column: str = "labels"):
    """(train part, validation part), stratified by label, both in dataset order: `fraction` of each class, but at
    least `MIN_PER_CLASS` of a class that has more members than that (a rare class still gets compared on); refuses
    a split too small to compare candidates on."""
    held = held_out(class_ids(dataset, label_column), fraction, seed)
    return dataset.select(np.setdiff1d(np.arange(len(dataset)), held)), dataset.select(held)


def class_ids(dataset, label_column: str) -> np.ndarray:
    """The `label_column` of `dataset` as an array ([rows], or [rows, classes] for multi-hot rows and for a class per
    word, as the classes each row holds); a missing column is one AFTError naming the columns there are."""
    if label_column not in dataset.column_names:
        raise AFTError(f"--beta auto stratifies on the label column {label_column!r}, which the training data lacks "
                       f"(columns: {', '.join(dataset.column_names)}): pass label_column=.")
    column = dataset.select_columns([label_column]).with_format("numpy")[label_column]
    inner = getattr(dataset.features[label_column], "feature", None)
    if getattr(inner, "dtype", "").startswith("int") or hasattr(inner, "names"):  # a class per word (-100: none)
        rows = [np.asarray(row, dtype=np.int64) for row in column]
        present = np.zeros((len(rows), 1 + max((int(row.max()) for row in rows if row.size), default=0)))
        for i, row in enumerate(rows):
            present[i, row[row >= 0]] = 1
        return present  # the classes each sentence holds, which `strata` reads as multi-hot rows
    if getattr(inner, "dtype", "").startswith("float") and (getattr(dataset.features[label_column], "length", -1) or
                                                            -1) > 0:
        return np.asarray(column).mean(1)  # several (standardised) regression targets: stratified by their mean
    return np.asarray(column)


def held_out(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The sorted indices of `split_validation`'s validation part, from the class ids alone (so that `hf-aft train`
    refuses a split too small before any teacher runs)."""
    if not 0 < fraction < 1:
        raise AFTError(f"the validation fraction for --beta auto must be in (0, 1) (got {fraction}).")
    rng = np.random.default_rng(seed)
    held, labels = [], strata(labels)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        share = int(round(fraction * len(members)))
        held.extend(rng.permutation(members)[: max(share, min(MIN_PER_CLASS, len(members) - 1))])
    held = np.sort(np.asarray(held, dtype=int))
    counts = np.unique(labels[held], return_counts=True)[1] if len(held) else np.array([0])
    if len(held) < MIN_VALIDATION or len(counts) < len(np.unique(labels)) or counts.min() < MIN_PER_CLASS:
        raise_fraction = ", raise --beta_validation_fraction" if len(labels) >= 2 * MIN_VALIDATION else ""
        raise AFTError(f"the validation split for --beta auto would hold {len(held)} examples ({fraction:.0%} of "
                       f"{len(labels)}, fewest per class {int(counts.min()) if len(held) else 0}); it needs at least "
                       f"{MIN_VALIDATION} and {MIN_PER_CLASS} per class: add training data (about "
                       f"{math.ceil(MIN_VALIDATION / fraction)} examples at this fraction){raise_fraction}, or give a "
                       "fixed --beta.")
    return held


def strata(labels: np.ndarray) -> np.ndarray:
    """What `held_out` stratifies on, [rows] ints: class ids as they are; multi-hot rows ([rows, classes]) by the
    rarest class each holds (-1: none), so a rare label still reaches the validation split; regression targets
    (floats) by their quintile, so the validation targets span the training targets' range."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        rarity = np.where(labels >= 0.5, labels.sum(0), np.inf)
        return np.where(np.isfinite(rarity.min(1)), rarity.argmin(1), -1)
    if labels.dtype.kind == "f":
        return np.searchsorted(np.quantile(labels, [0.2, 0.4, 0.6, 0.8]), labels)
    return labels


def check_given(labels: np.ndarray, name: str) -> None:
    """A validation split of the dataset's own (class ids `labels`) is large enough to compare candidates on."""
    if len(labels) < MIN_VALIDATION:
        raise AFTError(f"the validation split {name!r} holds {len(labels)} examples; --beta auto needs at least "
                       f"{MIN_VALIDATION} to compare candidates on: pass --beta_validation_split none to hold out "
                       "part of the training data instead, another split, or a fixed --beta.")


def validation_split_name(data: dict, train_split: str, eval_split: str | None,
                          validation_split: str | None) -> str | None:
    """`validation_split` (refused if missing, or the training or eval split; "none": None), else validation/valid
    when it is not the eval split, else None."""
    if validation_split == "none":
        return None
    if validation_split is None:
        return next((s for s in ("validation", "valid") if s in data and s != eval_split), None)
    if validation_split not in data:
        raise AFTError(f"split {validation_split!r} not found; the dataset has splits {list(data)}: pass another "
                       "--beta_validation_split, or none to hold out part of the training data.")
    if validation_split in (train_split, eval_split):
        role = "training" if validation_split == train_split else "evaluation"
        raise AFTError(f"--beta_validation_split {validation_split!r} is the {role} split: beta must be chosen on "
                       "other data, or the reported result is biased; name another split, or none to hold out part of "
                       "the training data.")
    return validation_split
