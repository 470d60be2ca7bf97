"""Probe distillation for token classification: the teachers' per-word probe.

A multinomial logistic regression (distillation.fit_probe at C = 1: the sentences' search for C is not measured on
words) on the teachers' per-word features (word_features.py: each teacher's mean over the word's sub-tokens) and the
words' classes, cross-fitted over the words (5 stratified folds): each labelled word's target is the out-of-fold
log-probabilities over the classes. A word the student's max length cut (it has no position, so nothing to distil
into), a word a teacher did not see (NaN features) and a word whose class has one labelled word get NaN: no target.
The words of unlabelled rows get the probe fitted on every labelled word. The targets are a per-row, per-word column
(`distill_targets`, [n_words, classes] per row) that the collator pads with NaN as it pads word features; the
trainer compares the student's logits at each word's first sub-token with its target (word_batches.word_pairs).
"""

from __future__ import annotations

import datasets
import numpy as np

from .distillation import PROBE_FOLDS, TARGETS_COLUMN, ProbeFit, cached_fit, fit_probe
from .word_features import word_matrix
from .words import IGNORED, WORD_POSITIONS

WORD_TARGET_CS = (1.0,)


def word_labels(dataset: datasets.Dataset, counts: np.ndarray) -> np.ndarray:
    """The class id of every word [sum of counts], in `word_matrix` order, read from each row's per-token `labels` at
    the tokens `word_positions` marks as a word's first sub-token; IGNORED (-100) for a word with no token."""
    rows = dataset.select_columns(["labels", WORD_POSITIONS])
    out, start = np.full(int(counts.sum()), IGNORED, dtype=np.int64), 0
    for count, labels, positions in zip(counts, rows["labels"], rows[WORD_POSITIONS], strict=True):
        labels, positions = np.asarray(labels), np.asarray(positions)
        first = (positions >= 0) & (positions < count)
        out[start + positions[first]] = labels[first]
        start += int(count)
    return out


def word_probe_targets(dataset: datasets.Dataset, num_classes: int, seed: int = 0,
                       unlabeled: datasets.Dataset | None = None, cache_dir=None) -> ProbeFit:
    """The per-word probe's targets for a tokenized training set with per-word teacher features (and unlabelled rows,
    whose words get the probe fitted on every labelled word): `labeled` and `unlabeled` are lists with one
    [n_words, classes] float32 array of log-probabilities per row (NaN rows: no target); `accuracy` is the
    out-of-fold word accuracy.

    Raises:
        AFTError: fewer than 2 classes with 2 or more labelled words seen by the teachers.
    """
    x, counts = word_matrix(dataset)
    labels = word_labels(dataset, counts)
    usable = np.isfinite(x).all(axis=1) & (labels >= 0)
    pool, pool_counts = word_matrix(unlabeled) if unlabeled is not None else (x[:0], np.zeros(0, np.int64))
    seen = np.isfinite(pool).all(axis=1)
    fit = cached_fit(["words", x, labels, pool, num_classes, seed, PROBE_FOLDS, WORD_TARGET_CS],
                     lambda: fit_probe(x[usable], labels[usable], pool[seen], num_classes, seed, cs=WORD_TARGET_CS),
                     (int(usable.sum()), int(seen.sum())), cache_dir)
    fit.labeled, fit.unlabeled = _per_row(fit.labeled, usable, counts), _per_row(fit.unlabeled, seen, pool_counts)
    return fit


def _per_row(values: np.ndarray, has_target: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Targets of the words in `has_target` spread back over all words (NaN for the others), split into rows."""
    targets = np.full((len(has_target), values.shape[1]), np.nan, dtype=np.float32)
    targets[has_target] = values
    return np.split(targets, np.cumsum(counts)[:-1]) if len(counts) else []


def with_word_targets(dataset: datasets.Dataset, targets: list[np.ndarray]) -> datasets.Dataset:
    """`dataset` with `distill_targets`: per row a list of per-word [classes] float32 lists (NaN: no target)."""
    info = dataset.info.description
    if TARGETS_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(TARGETS_COLUMN)
    width = targets[0].shape[1] if targets else 0
    feature = datasets.List(datasets.List(datasets.Value("float32"), length=width))
    column = datasets.Dataset.from_dict({TARGETS_COLUMN: [t.tolist() for t in targets]},
                                        features=datasets.Features({TARGETS_COLUMN: feature}))
    joined = datasets.concatenate_datasets([dataset, column], axis=1)
    joined.info.description = info
    return joined
