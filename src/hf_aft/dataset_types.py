"""What the Python API takes as data: one split, a `datasets.Dataset` (rows it can count, and cache teacher features
for). A `DatasetDict`, a streamed `IterableDataset`, a pandas DataFrame, a list of rows or a dict of columns is
refused in one line that says how to make one, instead of failing deep in a library (`len()` of a stream, a missing
`column_names`) or with a misleading count (`len(DatasetDict)` counts its splits)."""

from __future__ import annotations

import datasets

from .errors import AFTError

_STREAMED = ("load it without streaming=True, or collect its rows: datasets.Dataset.from_generator(lambda: "
             "(yield from stream))")
_WAYS = {
    "IterableDataset": _STREAMED, "IterableDatasetDict": _STREAMED,
    "dict": "datasets.Dataset.from_dict(columns) makes one",
    "DataFrame": "datasets.Dataset.from_pandas(frame) makes one",
    "list": "datasets.Dataset.from_list(rows) makes one of dicts, from_dict({'text': texts}) of texts",
}


def is_one_split(value) -> bool:
    """Whether `value` is a `datasets.Dataset` (not a DatasetDict, a stream or rows in another container)."""
    return isinstance(value, datasets.Dataset)


def check_one_split(value, what: str, one_split: str) -> None:
    """`value` is a `datasets.Dataset`. `what` names it in the refusal ("train_dataset"), `one_split` says how to
    give one split of a DatasetDict ("train_dataset=data['train']").

    Raises:
        AFTError: any other value, with the way to make a Dataset of it.
    """
    if is_one_split(value):
        return
    kind = type(value).__name__
    way = f"give one split of it ({one_split})" if isinstance(value, datasets.DatasetDict) else _WAYS.get(
        kind, "give a datasets.Dataset")
    raise AFTError(f"{what} must be a datasets.Dataset, not {kind}: {way}.")
