"""Label columns that read as one task but were likely meant as another: said in one warning, not refused (a class
name may hold a comma)."""

from __future__ import annotations

import logging
import re

import datasets
import pyarrow.compute as pc

from .columns import arrow_column
from .errors import warn_once

logger = logging.getLogger(__name__)
SEPARATORS = (",", ";", "|")


def say_joined_classes(dataset: datasets.Dataset, column: str) -> None:
    """A text label column whose classes join names with a separator ("fresh,long" beside "fresh"), as a CSV writes a
    row's list of classes: read as single-label classes, each combination its own class, where a multi-label task
    was likely meant. Said when two classes are joined, or one joins names that are classes themselves (one name
    with a comma, "Arts, Culture", is a name). One warning naming the way to lists."""
    names = {str(name) for name in dataset.unique(column) if name is not None}
    parts = {name: [p.strip() for p in re.split("|".join(map(re.escape, SEPARATORS)), name) if p.strip()]
             for name in names}
    joined = sorted(name for name, split in parts.items() if len(split) > 1)
    if len(joined) >= 2 or any(p in names for name in joined for p in parts[name]):
        separators = "".join(sorted({c for name in joined for c in SEPARATORS if c in name}))
        shown = ", ".join(repr(name) for name in joined[:3]) + (", ..." if len(joined) > 3 else "")
        split = f"re.split('[{separators}]', row[{column!r}])"
        logger.warning(
            f"hf-aft: {len(joined)} of the {len(names)} classes of the label column {column!r} join names with "
            f"{' or '.join(map(repr, separators))} ({shown}): each is read as one class of a single-label task. For a "
            f"multi-label task give each row a list of its classes (a JSON or parquet list; from a CSV: "
            f"dataset.map(lambda row: {{{column!r}: {split} if row[{column!r}] else []}})), a row with no class an "
            "empty list.")


def warn_stray_fractions(dataset, name: str) -> None:
    """Say once when a float label column read as a regression looks like classes with a few stray fractions (0/1
    labels and one 0.5, say): a single such row turns a classifier's run into a regression."""
    column = arrow_column(dataset, name)
    counts = pc.value_counts(column.drop_null()).to_pylist()
    stray = [(c["values"], c["counts"]) for c in counts if not float(c["values"]).is_integer()]
    whole = len(counts) - len(stray)
    if stray and whole >= 2 and len(counts) <= 20 and sum(n for _, n in stray) <= max(1, 0.01 * len(column)):
        warn_once(logger, f"hf-aft: the label column {name!r} holds whole numbers but for {sum(n for _, n in stray)} "
                  f"row(s) of {sorted(v for v, _ in stray)[:3]}, so it is read as a regression's targets: if it holds "
                  "classes, fix those rows (--problem_type single_label_classification names any left).")
