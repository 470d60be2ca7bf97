"""Loading a labelled dataset for the CLI: from the Hub, a `save_to_disk` folder, or csv/json/parquet files;
finding its splits and turning its labels into class ids with names."""

from __future__ import annotations

import os
from dataclasses import dataclass

import datasets

from .errors import AFTError

_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
EVAL_SPLITS = ("test", "validation", "valid", "eval")


def load_dataset_dict(name: str, config: str | None = None) -> datasets.DatasetDict:
    """A Hub id, a folder written by `save_to_disk`, a folder of data files, or one or more comma-separated files."""
    files = [f for f in name.split(",") if f]
    suffixes = {os.path.splitext(f)[1].lower() for f in files}
    try:
        if os.path.isdir(name) and any(os.path.exists(os.path.join(name, f)) for f in ("dataset_dict.json",
                                                                                       "dataset_info.json")):
            loaded = datasets.load_from_disk(name)
        elif all(os.path.isfile(f) for f in files) and len(suffixes) == 1 and suffixes <= set(_FILE_BUILDERS):
            builder = _FILE_BUILDERS[suffixes.pop()]
            kwargs = {"delimiter": "\t"} if name.endswith(".tsv") else {}
            loaded = datasets.load_dataset(builder, data_files={"train": files}, **kwargs)
        elif (snapshot := _hub_saved_folder(name)) is not None:
            loaded = datasets.load_from_disk(snapshot)
        else:
            loaded = datasets.load_dataset(name, config)
    except AFTError:
        raise
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise AFTError(f"could not load dataset {name!r}: {first}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _hub_saved_folder(name: str) -> str | None:
    """A Hub dataset repo holding a `save_to_disk` folder (what `hf-aft features --push_to_hub` writes): its local
    snapshot, so that it loads with its teachers' provenance. None for any other dataset."""
    if os.path.exists(name) or name.count("/") != 1:
        return None
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        hf_hub_download(name, "dataset_dict.json", repo_type="dataset")
    except Exception:  # not there, not a repo, or offline without it cached: load it the usual way
        return None
    return snapshot_download(name, repo_type="dataset")


def pick_splits(data: datasets.DatasetDict, train_split: str, eval_split: str | None):
    if train_split not in data:
        raise AFTError(f"split {train_split!r} not found; the dataset has splits {list(data)}: pass --train_split.")
    if eval_split is not None and eval_split not in data:
        raise AFTError(f"split {eval_split!r} not found; the dataset has splits {list(data)}: pass --eval_split.")
    eval_split = eval_split or next((s for s in EVAL_SPLITS if s in data), None)
    return data[train_split], (data[eval_split] if eval_split else None)


def check_columns(dataset: datasets.Dataset, *columns: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            raise AFTError(f"column {column!r} not found; the dataset has columns {dataset.column_names}. "
                           "Pass --text_column / --label_column.")
    if len(dataset) == 0:
        raise AFTError("the dataset is empty.")


@dataclass
class Labels:
    """Class names in id order; `encode` maps a dataset's label column to ids in a `labels` column."""

    names: list[str]
    column: str
    is_class_label: bool

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset, column: str) -> Labels:
        feature = dataset.features[column]
        if isinstance(feature, datasets.ClassLabel):
            return cls(list(feature.names), column, True)
        values = sorted(set(dataset[column]), key=lambda v: (str(type(v)), v))
        if any(v is None for v in values):
            raise AFTError(f"the label column {column!r} has missing values: drop or fill those rows.")
        return cls([str(v) for v in values], column, False)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, dataset: datasets.Dataset) -> datasets.Dataset:
        if self.is_class_label:
            return dataset.rename_column(self.column, "labels") if self.column != "labels" else dataset
        label2id = self.label2id
        unknown = {str(v) for v in set(dataset[self.column])} - set(label2id)
        if unknown:
            raise AFTError(f"labels {sorted(unknown)[:5]} appear outside the training split's labels {self.names}.")
        encoded = dataset.map(lambda b: {"labels": [label2id[str(v)] for v in b[self.column]]}, batched=True)
        return encoded.remove_columns(self.column) if self.column != "labels" else encoded
