"""A split's missing input or label column, refused in one line with the way out: the flag that names it (and the
one column that fits, when there is one), an image folder's labels, a CSV read with the wrong separator."""

from __future__ import annotations

import datasets
import pyarrow as pa

from .dataset_types import check_one_split
from .errors import AFTError


def check_columns(dataset: datasets.Dataset, *columns: str, way_out: str | None = None) -> None:
    """Each of `columns` (the input, then the label; "a,b" for several regression targets) is in `dataset`.
    `way_out`: the refusal's last sentence, where no flag of the command names the columns (a run's recipe does)."""
    images_only = [type(f) for f in dataset.features.values()] == [datasets.Image]  # an image folder without labels
    images = [c for c, f in dataset.features.items() if isinstance(f, datasets.Image)]
    for column in columns:
        if column not in dataset.column_names:  # of a "a,b" of regression targets, the parts missing
            parts = [p.strip() for p in column.split(",") if p.strip() not in dataset.column_names] or [column]
            raise AFTError(f"column {', '.join(map(repr, parts))} not found; the dataset has columns "
                           f"{dataset.column_names}. " + (way_out or (
                "An image folder has labels when every image of a split is one folder below it, a folder per class "
                "(train/cat/a.png), or when a metadata.csv in each split folder gives them (file_name, label)."
                if images_only else f"Its images are in {images[0]!r}: pass --image_column {images[0]}."
                if images and column == columns[0] else _named_flag(dataset, column != columns[0], columns) + (
                    " (A .csv is read as comma-separated, and this one looks separated by semicolons: save it again "
                    "with commas, or as a .tsv with tabs.)" if ";" in ",".join(dataset.column_names) else
                    " (A .csv is read as comma-separated, and this one looks separated by tabs: name it .tsv.)"
                    if "\t" in ",".join(dataset.column_names) else ""))))
    if len(dataset) == 0:
        raise AFTError("the dataset is empty.")


def _named_flag(dataset: datasets.Dataset, label: bool, asked: tuple[str, ...]) -> str:
    """The flag that names the missing column, with the one column that fits when there is one: for the labels a
    ClassLabel, else the one column besides those asked for; for the input a text column that is not asked for."""
    features = {c: f for c, f in dataset.features.items() if c not in asked}
    fits = ([c for c, f in features.items() if isinstance(f, datasets.ClassLabel)] or list(features)) if label else [
        c for c, f in features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    flag = "--label_column" if label else "--text_column"
    return f"Pass {flag} {fits[0]}." if len(fits) == 1 else f"Pass {flag} naming it."


def check_label_source(dataset, column: str) -> None:
    """The dataset a `Labels` (or other targets) encodes is one split holding the label column it reads.

    Raises:
        AFTError: not a `datasets.Dataset` (a list of rows, a DatasetDict), or no such column.
    """
    check_one_split(dataset, "the dataset to encode", "labels.encode(data['train'])")
    if column not in dataset.column_names:
        raise AFTError(f"the dataset to encode has no label column {column!r} (it has {dataset.column_names}): "
                       "encode a split that holds it, or make the labels with column= naming yours.")


def arrow_column(dataset: datasets.Dataset, column: str) -> pa.ChunkedArray:
    """One column as Arrow, in the dataset's row order (a shuffled or selected split's), copied only if it must."""
    return dataset.select_columns([column]).with_format("arrow")[:][column]
