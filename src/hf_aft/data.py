"""The first step: a labelled dataset from the Hub, a `save_to_disk` folder, or csv/json/parquet files; its splits;
its labels as class ids with names (`load_labelled_splits` does all of it, for `hf-aft train` and the Python API)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from .class_sets import align_class_ids, check_known_classes, trained_ids, warn_near_duplicates, warn_untrained
from .columns import arrow_column, check_columns, check_label_source  # arrow_column: re-exported
from .data_files import (
    CSV_MISSING,
    FILE_BUILDERS,
    check_not_empty,
    check_parquet_columns,
    check_saved_rows,
    check_utf8,
    conversion_cache,
    drop_new_locks,
    file_format,
    folder_data_files,
    hub_saved_folder,
    load_by_name,
    missing_split,
    named_files,
    suffix,
)
from .errors import AFTError
from .faults import disk_errno, disk_error
from .images import check_images_open
from .load_errors import why_not_loaded
from .targets import (
    MULTI,
    PROBLEM_TYPES,
    REGRESSION,
    SINGLE,
    TOKEN,
    ClassNames,
    MultiLabels,
    RegressionTargets,
    drop_other_labels,
    infer_problem_type,
    join_target_columns,
    with_labels,
)
from .validation_split import validation_split_name
from .words import TokenLabels, input_column_of, not_text_advice

EVAL_SPLITS = ("test", "validation", "valid", "eval")


def load_dataset_dict(name: str, config: str | None = None) -> datasets.DatasetDict:
    """A Hub id, a folder written by `save_to_disk`, a folder of data files, or one or more comma-separated files or
    glob patterns (files of one format: they become the train split)."""
    folder = os.path.isdir(name)
    saved = folder and any(os.path.exists(os.path.join(name, f)) for f in ("dataset_dict.json", "dataset_info.json"))
    files = folder_data_files(name) if folder and not saved else named_files(name)
    check_not_empty(files)
    check_parquet_columns([f for f in files if suffix(f) == ".parquet"])
    started = time.time()
    try:
        if saved:
            check_saved_rows(name)
            loaded = datasets.load_from_disk(name)
        elif files and not folder:
            kwargs = {"delimiter": "\t"} if file_format(files[0]) == "tsv" else {}
            loaded = datasets.load_dataset(FILE_BUILDERS[suffix(files[0])], data_files={"train": files},
                                           cache_dir=conversion_cache(), **kwargs)
        elif (snapshot := hub_saved_folder(name)) is not None:
            loaded = datasets.load_from_disk(snapshot)
        else:  # a folder of data files (converted like files), or a Hub id (read from the cache as it is)
            loaded = load_by_name(name, config, cache_dir=conversion_cache() if folder else None)
    except AFTError:
        raise
    except Exception as error:
        if disk_errno(error) is not None:
            drop_new_locks(started)
            raise disk_error(error, datasets.config.HF_DATASETS_CACHE, way_out=f"loading {name!r} writes it there in "
                             "Arrow form: free space, or set HF_DATASETS_CACHE to another folder") from error
        raise AFTError(f"could not load dataset {name!r}: {why_not_loaded(name, error, files)}") from error
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def pick_splits(data: datasets.DatasetDict, train_split: str, eval_split: str | None, source: str | None = None,
                way_out: str | None = None):
    """(train split, eval split or None); the eval split defaults to the first of EVAL_SPLITS present. `way_out`
    as for `load_labelled_splits`."""
    for split, option in ((train_split, "--train_split"), (eval_split, "--eval_split")):
        if split is not None and split not in data:
            raise missing_split(split, list(data), source, way_out or f"name one of them with {option}")
    eval_split = eval_split_name(data, eval_split)
    return data[train_split], (data[eval_split] if eval_split else None)


def eval_split_name(data: datasets.DatasetDict, eval_split: str | None) -> str | None:
    """The split given, else the first of test/validation/valid/eval present, else None."""
    return eval_split or next((s for s in EVAL_SPLITS if s in data), None)


def first_row(mask: pa.ChunkedArray) -> int | None:
    """The first row where a boolean Arrow column is true, or None."""
    found = pc.index(mask.fill_null(False), True).as_py()
    return None if found is None or found < 0 else found


def check_texts(dataset: datasets.Dataset, column: str, split: str = "train") -> None:
    """Every row of a text column holds a string: a missing text (an empty CSV cell, a JSON null or a missing key)
    or a column of numbers is one line naming the column and the first bad row, before any model sees it."""
    if column not in dataset.column_names:
        return
    feature = dataset.features[column]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise AFTError(f"the {split} split's column {column!r} holds {feature}, not text (from row 0): "
                       + not_text_advice(feature))
    check_no_missing(dataset, column, split, "text")
    check_utf8(arrow_column(dataset, column), column, split)


def check_all_text(dataset: datasets.Dataset, column: str, split: str) -> None:
    """A column datasets read as Json (rows of several kinds) names its first row that is not a string."""
    row = next((i for i, value in enumerate(dataset[column]) if not isinstance(value, str)), 0)
    raise AFTError(f"the {split} split's column {column!r} is not all text: row {row} holds {dataset[row][column]!r}. "
                   "Make every row a text (quote it) or drop that row.")


def check_no_missing(dataset: datasets.Dataset, column: str, split: str, what: str) -> None:
    values = arrow_column(dataset, column)
    row = first_row(pc.is_null(values)) if values.null_count else None
    if row is not None:
        count = f"{values.null_count} such row" + "s" * (values.null_count != 1)
        raise AFTError(f"the {split} split's column {column!r} has no {what} at row {row} (an empty cell, a null or a "
                       f"missing key; {count}): drop or fill those rows"
                       + (f"; {CSV_MISSING}." if what == "text" else "."))


def check_inputs(dataset: datasets.Dataset, column: str, split: str) -> None:
    """The input column of a split: text (each row a string) or images (no row missing, each file opens)."""
    feature = dataset.features[column]
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        check_texts(dataset, column, split)
    elif isinstance(feature, datasets.Value):
        raise AFTError(f"the {split} split's column {column!r} holds {feature.dtype} values, not text or images: "
                       "choose the input column with --text_column or --image_column (texts of digits are numbers in a"
                       " csv or unquoted json: save them as strings, in jsonl or parquet).")
    elif isinstance(feature, datasets.Json):  # JSON rows of several kinds: texts and a number, say
        check_all_text(dataset, column, split)
    else:
        check_no_missing(dataset, column, split, "input")
        if isinstance(feature, datasets.Image):
            check_images_open(dataset, column, split)


@dataclass
class Labels(ClassNames):
    """Class names in id order; `encode` maps a dataset's label column to ids in a `labels` column.

    Raises:
        AFTError: a `problem_type` that is not one of `targets.PROBLEM_TYPES`.
    """

    names: list[str]
    column: str
    is_class_label: bool
    problem_type: str = SINGLE
    trained: frozenset | None = None  # a ClassLabel's ids with training rows (its names may hold more)

    def __post_init__(self):
        if self.problem_type not in PROBLEM_TYPES:
            raise AFTError(f"unknown problem_type {self.problem_type!r}: choose one of {', '.join(PROBLEM_TYPES)}.")

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset, column: str) -> Labels:
        feature = dataset.features[column]
        row = hidden_label_row(dataset, column)
        if row is not None:
            raise AFTError(f"the training split's label column {column!r} holds -1 from row {row}: a hidden label "
                           "(as in GLUE's test splits), not a class. Drop the unlabelled rows first, e.g. "
                           f"dataset.filter(lambda x: x[{column!r}] != -1); if -1 is a real class, map the labels to "
                           "other values; if they are a regression's targets, pass --problem_type regression.")
        if isinstance(feature, datasets.ClassLabel):
            missing = arrow_column(dataset, column).null_count
            if missing:  # e.g. an image folder whose images are not in one subfolder per class
                raise AFTError(f"the training split's label column {column!r} has no label in {missing} of "
                               f"{len(dataset)} rows (an image folder takes its classes from one subfolder per "
                               "class): fill or drop those rows, or give the labels in a column of their own.")
            return cls(list(feature.names), column, True,
                       trained=trained_ids(arrow_column(dataset, column), len(feature.names)))
        check_no_missing(dataset, column, "training", "label")
        values = set(pc.unique(arrow_column(dataset, column)).to_pylist())  # Arrow: no Python row objects
        if any(isinstance(v, float) and not float(v).is_integer() for v in values):
            raise AFTError(f"the label column {column!r} holds fractional numbers ({len(values)} distinct): a "
                           "classifier takes class labels (strings or integers), e.g. bin the values first; for a "
                           "regression on them, --problem_type regression.")
        names = [str(v) for v in sorted(values, key=lambda v: (str(type(v)), v))]
        warn_near_duplicates(names, column)
        return cls(names, column, False)

    def check_classes(self) -> None:
        if len(self.names) < 2:
            raise AFTError(f"the training split's label column {self.column!r} holds one class only "
                           f"({self.names}): a classifier needs at least 2 classes.")

    def encode(self, dataset: datasets.Dataset) -> datasets.Dataset:
        """The label column as class ids in a `labels` column (`targets.with_labels`; a ClassLabel is renamed).

        Raises:
            AFTError: not one split, no label column, or a label that is not one of `names`.
        """
        check_label_source(dataset, self.column)
        if self.is_class_label:
            dataset = drop_other_labels(dataset, self.column)
            return dataset.rename_column(self.column, "labels") if self.column != "labels" else dataset
        label2id = self.label2id
        values = [str(v) for v in dataset[self.column]]
        unknown = set(values) - set(label2id)
        if unknown:
            raise AFTError(f"labels {sorted(unknown)[:5]} appear outside the training split's labels {self.names}.")
        return with_labels(dataset, self.column, [label2id[v] for v in values])


def hidden_label_row(dataset: datasets.Dataset, column: str) -> int | None:
    """The first row labelled -1 (GLUE's hidden test labels) in a ClassLabel or integer label column (or a column of
    integers written as strings), or None."""
    feature = dataset.features[column]
    values = arrow_column(dataset, column)
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        if not all(str(v).lstrip("-").isdigit() for v in pc.unique(values).to_pylist() if v is not None):
            return None
        return first_row(pc.equal(values, "-1"))
    if not (isinstance(feature, datasets.ClassLabel) or isinstance(feature, datasets.Value)
            and feature.dtype.startswith("int")):
        return None
    return first_row(pc.equal(values, -1))


def check_eval_labels(dataset: datasets.Dataset, labels: Labels, split: str, role: str = "eval",
                      flag: str = "--eval_split") -> None:
    """The `role` ("eval" or "validation") split's labels are classes the training split has (no hidden -1, no
    missing value, no new class: one refusal for a class per row, a set per row and a class per word); the advice
    names `flag`. Every row's targets are read now, so that a bad one stops the run before training."""
    if labels.problem_type == SINGLE:
        row = hidden_label_row(dataset, labels.column)
        if row is not None:
            raise AFTError(f"the {role} split {split!r} has hidden labels (-1, as in GLUE's test splits) from row "
                           f"{row}: choose another {flag} (e.g. validation), or drop those rows.")
        check_no_missing(dataset, labels.column, split, "label")
    if labels.problem_type != REGRESSION:
        check_known_classes(labels, arrow_column(dataset, labels.column), split, role, flag)
    if labels.problem_type != SINGLE:
        labels.check_split(dataset, split)


def read_targets(dataset: datasets.Dataset, column: str, problem_type: str | None = None,
                 words_column: str | None = None):
    """The training split's targets as its problem type reads them (`targets.infer_problem_type`): `Labels`,
    `targets.MultiLabels`, `targets.RegressionTargets` or `words.TokenLabels` (a class per word of `words_column`)."""
    problem_type = infer_problem_type(dataset, column, problem_type, words_column)
    if problem_type == TOKEN:
        return TokenLabels.from_dataset(dataset, column, words_column)
    if problem_type == MULTI:
        return MultiLabels.from_dataset(dataset, column)
    if problem_type == REGRESSION:
        return RegressionTargets.from_dataset(dataset, column)
    return Labels.from_dataset(dataset, column)


@dataclass
class LabelledSplits:
    """The training split, the evaluation split (or None) and the labels, as the training split defines them."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    labels: Labels
    eval_name: str | None = None  # the eval split's name, as chosen or found
    validation: datasets.Dataset | None = None  # where --beta auto compares candidates, when asked for
    validation_name: str | None = None
    unread: dict[str, int] = field(default_factory=dict)  # the source's other splits (name -> rows): no run reads them
    others: dict[str, datasets.Dataset] = field(default_factory=dict)  # those splits (no pool row may come from one)


def load_labelled_splits(dataset_name: str, dataset_config: str | None = None, train_split: str = "train",
                         eval_split: str | None = None, input_column: str = "text",
                         label_column: str = "label", validation_split: str | None = None,
                         find_validation: bool = False, problem_type: str | None = None,
                         way_out: str | None = None) -> LabelledSplits:
    """Load a dataset, pick its splits (the eval split defaults to the first of test/validation/valid/eval present),
    check that each holds `input_column` and `label_column`, and read the class names from the training split.

    With `find_validation` (`--beta auto`), the split to choose beta on is `validation_split`, else the first of
    validation/valid that is not the eval split, else None (hold out part of the training data).

    Every split used is checked before any model sees it: its inputs (a text in every row; no missing image) and its
    labels (no hidden -1 label, no missing one, no class the training split lacks). `way_out`: the end of the
    refusal of a missing split or column where no option of the command names them (a run's recipe does).

    Raises:
        AFTError: a dataset that cannot be loaded, a missing split or column, an empty split, a missing text, fewer
            than 2 classes, labels that cannot be trained or evaluated on.
    """
    data = join_target_columns(load_dataset_dict(dataset_name, dataset_config), label_column)  # "a,b": 2 targets
    train_set, eval_set = pick_splits(data, train_split, eval_split, dataset_name, way_out)
    eval_split, input_column = eval_split_name(data, eval_split), input_column_of(train_set, input_column)
    for split, name, option in ((train_set, train_split, "--train_split"), (eval_set, eval_split, "--eval_split")):
        if split is not None:
            check_labelled(split, name, label_column, data, option, way_out)
            check_columns(split, input_column, label_column, way_out=way_out and f"{way_out[0].upper()}{way_out[1:]}.")
            check_inputs(split, input_column, name)
    labels = read_targets(train_set, label_column, problem_type, input_column)
    labels.check_classes()
    if eval_set is not None:
        eval_set = align_class_ids(eval_set, label_column, labels.names, eval_split)
        check_eval_labels(eval_set, labels, eval_split)
    validation_name = (validation_split_name(data, train_split, eval_split, validation_split) if find_validation
                       else None)
    validation = data[validation_name] if validation_name else None
    if validation is not None:
        validation = align_class_ids(validation, label_column, labels.names, validation_name)
        check_labelled(validation, validation_name, label_column, data, "--beta_validation_split")
        check_columns(validation, input_column, label_column)
        check_inputs(validation, input_column, validation_name)
        check_eval_labels(validation, labels, validation_name, "validation", "--beta_validation_split")
    warn_untrained(labels)  # after the refusals, so that each stays one line
    others = {name: rows for name, rows in data.items() if name not in (train_split, eval_split, validation_name)}
    return LabelledSplits(train_set, eval_set, labels, eval_split, validation, validation_name,
                          {name: len(rows) for name, rows in others.items()}, others)


def check_labelled(split: datasets.Dataset, name: str, label_column: str, data: datasets.DatasetDict,
                   option: str, way_out: str | None = None) -> None:
    """A split chosen to train or score the student has the label column when another split has it (not the
    `unlabeled` split of `hf-aft features`, say); the refusal names the labelled splits there are."""
    labelled = [s for s in data if s != name and label_column in data[s].column_names]
    if label_column in split.column_names or not labelled:
        return  # no split has it: check_columns names the column
    held = f"{', '.join(labelled)} {'has' if len(labelled) == 1 else 'have'} it"
    raise AFTError(f"the split {name!r} has no label column {label_column!r} ({held}): "
                   f"{way_out or f'choose a labelled split with {option}'}.")
