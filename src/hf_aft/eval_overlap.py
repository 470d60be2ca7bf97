"""Eval rows that are also training rows: the same text once normalised (case, width, spacing) or the same decoded
pixels, compared as the pool's leakage check compares them (`unlabeled_data.comparable_rows`). The eval score counts
them as seen. A warning, not a refusal: public benchmarks hold a few such duplicates, and a user may mean them."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pyarrow.compute as pc

from .unlabeled_data import comparable_rows

logger = logging.getLogger(__name__)


def say_eval_rows_in_training(train: datasets.Dataset, eval_set: datasets.Dataset | None, column: str,
                              images: bool = False, names: tuple[str, str] = ("train", "eval")) -> int:
    """Warns when rows of `eval_set` are also in `train` (by `column`, the input; `images`: file paths in it are
    compared by their pixels, so a copy under another name is found); returns how many. `names`: the two splits'
    names, for the refusal of an image that cannot be read (its row, in the one pass that decodes every image)."""
    if eval_set is None or column not in train.column_names or column not in eval_set.column_names:
        return 0
    if images:
        train, eval_set = (split.cast_column(column, datasets.Image()) if split.features[column] == datasets.Value(
            "string") else split for split in (train, eval_set))
    shared = pc.is_in(comparable_rows(eval_set, train, column, names[1]),
                      value_set=comparable_rows(train, eval_set, column, names[0]).unique(), skip_nulls=True)
    count = pc.sum(shared.cast("int64")).as_py() or 0
    if count:
        row = int(np.flatnonzero(shared.to_numpy(zero_copy_only=False))[0])
        logger.warning(f"hf-aft: {count} of the {len(eval_set)} eval rows (first at row {row}) are also training rows "
                       f"(the same {column!r}): the eval score counts them as seen; remove them from one split for an "
                       "honest score.")
    return count
