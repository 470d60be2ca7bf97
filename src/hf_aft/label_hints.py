"""Label columns that read as one task but were likely meant as another: said in one warning, not refused (a class
name may hold a comma)."""

from __future__ import annotations

import logging

import datasets

logger = logging.getLogger(__name__)
SEPARATORS = (",", ";", "|")


def say_joined_classes(dataset: datasets.Dataset, column: str) -> None:
    """A text label column whose classes join names with one separator ("fresh,long" beside "fresh"), as a CSV
    writes a row's list of classes: read as single-label classes, each combination its own class, where a
    multi-label task was likely meant. One warning naming the way to lists."""
    names = [str(name) for name in dataset.unique(column) if name is not None]
    for separator in SEPARATORS:
        joined = sorted(name for name in names if separator in name.strip(separator))
        if len(joined) >= 2:
            shown = ", ".join(repr(name) for name in joined[:3]) + (", ..." if len(joined) > 3 else "")
            logger.warning(
                f"hf-aft: {len(joined)} of the {len(names)} classes of the label column {column!r} join names with "
                f"{separator!r} ({shown}): each is read as one class of a single-label task. For a multi-label task "
                f"give each row a list of its classes (a JSON or parquet list; from a CSV: dataset.map(lambda row: "
                f"{{{column!r}: row[{column!r}].split({separator!r}) if row[{column!r}] else []}})), a row with no "
                "class an empty list.")
            return
