"""The first step: a labelled dataset from the Hub, a `save_to_disk` folder, or csv/json/parquet files; its splits;
its labels as class ids with names (`load_labelled_splits` does all of it, for `hf-aft train` and the Python API)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import datasets

from .errors import AFTError, first_line

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
        raise AFTError(f"could not load dataset {name!r}: {first_line(error)}") from error
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
    """(train split, eval split or None); the eval split defaults to the first of EVAL_SPLITS present."""
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
        values = set(dataset[column])
        if None in values:
            raise AFTError(f"the label column {column!r} has missing values: drop or fill those rows.")
        if any(isinstance(v, float) and not float(v).is_integer() for v in values):
            raise AFTError(f"the label column {column!r} holds fractional numbers ({len(values)} distinct): hf-aft "
                           "trains classifiers; give class labels (strings or integers), e.g. bin the values first.")
        return cls([str(v) for v in sorted(values, key=lambda v: (str(type(v)), v))], column, False)

    def check_classes(self) -> None:
        if len(self.names) < 2:
            raise AFTError(f"the training split's label column {self.column!r} holds one class only "
                           f"({self.names}): a classifier needs at least 2 classes.")

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, dataset: datasets.Dataset) -> datasets.Dataset:
        """The label column as class ids in a `labels` column. Only that column is written (`add_column`): the
        other columns, the wide teacher features among them, are referenced, not copied."""
        if self.is_class_label:
            return dataset.rename_column(self.column, "labels") if self.column != "labels" else dataset
        label2id = self.label2id
        values = [str(v) for v in dataset[self.column]]
        unknown = set(values) - set(label2id)
        if unknown:
            raise AFTError(f"labels {sorted(unknown)[:5]} appear outside the training split's labels {self.names}.")
        info = dataset.info.description
        encoded = dataset.remove_columns(self.column).add_column("labels", [label2id[v] for v in values])
        encoded.info.description = info  # the teachers' provenance, if any
        return encoded


@dataclass
class LabelledSplits:
    """The training split, the evaluation split (or None) and the labels, as the training split defines them."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    labels: Labels
    eval_name: str | None = None  # the eval split's name, as chosen or found


def load_labelled_splits(dataset_name: str, dataset_config: str | None = None, train_split: str = "train",
                         eval_split: str | None = None, input_column: str = "text",
                         label_column: str = "label") -> LabelledSplits:
    """Load a dataset, pick its splits (the eval split defaults to the first of test/validation/valid/eval present),
    check that each holds `input_column` and `label_column`, and read the class names from the training split.

    Raises:
        AFTError: a dataset that cannot be loaded, a missing split or column, an empty split, fewer than 2 classes.
    """
    data = load_dataset_dict(dataset_name, dataset_config)
    train_set, eval_set = pick_splits(data, train_split, eval_split)
    for split in (train_set, eval_set):
        if split is not None:
            check_columns(split, input_column, label_column)
    labels = Labels.from_dataset(train_set, label_column)
    labels.check_classes()
    eval_name = eval_split or next((s for s in EVAL_SPLITS if s in data), None)
    return LabelledSplits(train_set, eval_set, labels, eval_name)
