"""What a label column asks the student to predict (`--problem_type`, transformers' `config.problem_type` names):

- `single_label_classification`: one class per row (a `ClassLabel`, strings, integers): `data.Labels`.
- `multi_label_classification`: a set of classes per row (a `Sequence(ClassLabel)`, or lists of names or integers):
  `MultiLabels`, a multi-hot `labels` column; the student's head is sigmoid per class, trained with binary
  cross-entropy (transformers' own loss for this problem type), decided at `threshold` (saved with the student).
- `regression`: a number per row (a float column), or several (a column of equally long lists of floats, or
  `--label_column a,b,c` naming several number columns, joined by `join_target_columns`): `RegressionTargets`, one
  output per target, trained with mean squared error.
- `token_classification`: a class per word (a list per row, beside a words column of the same lengths):
  `words.TokenLabels`.

`infer_problem_type` picks the type from the column's feature; `--problem_type` overrides it when the column can be
read that way too (integers as targets of a regression, floats that are whole numbers as classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow.compute as pc

from .class_sets import class_index, class_key, class_name, trained_ids, trained_names, warn_near_duplicates
from .columns import arrow_column, check_label_source
from .errors import AFTError
from .label_hints import say_joined_classes, warn_stray_fractions

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
TOKEN = "token_classification"
PROBLEM_TYPES = (SINGLE, MULTI, REGRESSION, TOKEN)
DEFAULT_THRESHOLD = 0.5


def _value_kind(feature) -> str | None:
    """"class", "text", "int", "float", "bool" for a scalar feature, else None."""
    if isinstance(feature, datasets.ClassLabel):
        return "class"
    if not isinstance(feature, datasets.Value):
        return None
    dtype = feature.dtype
    return ("text" if dtype in ("string", "large_string") else "bool" if dtype == "bool" else
            "int" if dtype.startswith(("int", "uint")) else "float" if dtype.startswith("float") else None)


def possible_problem_types(feature) -> list[str]:
    """The problem types a label column's feature can be read as, the inferred one first."""
    inner = getattr(feature, "feature", None)  # Sequence / List / LargeList
    if inner is not None:  # lists: of classes (multi-label), of floats (several regression targets)
        kind = _value_kind(inner)
        return [MULTI] if kind in ("class", "text", "int", "bool") else [REGRESSION] if kind == "float" else []
    kind = _value_kind(feature)
    return {"class": [SINGLE], "text": [SINGLE], "bool": [SINGLE], "int": [SINGLE, REGRESSION],
            "float": [REGRESSION, SINGLE]}.get(kind, [])


def infer_problem_type(dataset: datasets.Dataset, column: str, problem_type: str | None = None,
                       words_column: str | None = None) -> str:
    """`problem_type` when the column can be read that way, else the one its feature says (lists beside a
    `words_column` of lists of strings: token classification first).

    Raises:
        AFTError: a column that fits no problem type, or not the one asked for (the line says which it could be).
    """
    feature = dataset.features[column]
    possible = possible_problem_types(feature)
    words = dataset.features.get(words_column) if words_column and words_column != column else None
    if possible == [MULTI] and isinstance(getattr(words, "feature", None), datasets.Value) \
            and words.feature.dtype in ("string", "large_string"):
        possible = [TOKEN, MULTI]  # a list of classes per row beside a list of words per row
    if not possible:
        raise AFTError(f"the label column {column!r} holds {feature}: not class labels (strings, integers, a "
                       "ClassLabel), lists of them (multi-label) or numbers (regression); choose another "
                       "--label_column, or convert the column.")
    if problem_type is None:
        if possible[0] != SINGLE:
            print(f"the label column {column!r} holds {feature}: a {possible[0]} task (--problem_type "
                  f"{' or '.join(possible)})", flush=True)
            if possible[0] == REGRESSION and isinstance(feature, datasets.Value):
                warn_stray_fractions(dataset, column)
        elif isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            check_not_numbers_as_text(dataset, column)
            say_joined_classes(dataset, column)
        return possible[0]
    if problem_type not in possible:
        raise AFTError(f"--problem_type {problem_type} does not fit the label column {column!r} ({feature}): it can "
                       f"be {' or '.join(possible)}.")
    return problem_type


_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_FRACTION = r"[.eE]"


def check_not_numbers_as_text(dataset: datasets.Dataset, column: str) -> None:
    """A text label column whose values are numbers with fractions (a CSV column that one stray word turned into
    text, or numbers written as strings) is refused: read as classes, each distinct number would be a class.

    Raises:
        AFTError: naming the first value that is not a number (or that all are numbers), and the two ways out.
    """
    values = arrow_column(dataset, column)
    present = len(values) - values.null_count
    if not present:
        return
    numbers = pc.match_substring_regex(values, _NUMBER).fill_null(False)
    fractions = pc.and_(numbers, pc.match_substring_regex(values, _FRACTION).fill_null(False))
    share = pc.sum(numbers.cast("int64")).as_py() / present
    if share < 0.9 or not pc.any(fractions).as_py():
        return
    way_out = "or pass --problem_type single_label_classification to read each distinct value as a class"
    if share < 1:
        text = pc.and_(pc.invert(numbers), pc.is_valid(values))
        row = int(np.flatnonzero(text.to_numpy(zero_copy_only=False))[0])
        raise AFTError(f"the label column {column!r} holds numbers as text but {values[row].as_py()!r} at row {row} "
                       f"is not a number: fix or drop that row to train a regression, {way_out}.")
    raise AFTError(f"the label column {column!r} holds numbers written as text (e.g. {values[0].as_py()!r}): convert "
                   f"it to numbers to train a regression, {way_out}.")


def join_target_columns(data: datasets.DatasetDict, label_column: str) -> datasets.DatasetDict:
    """With `label_column` "a,b,c" naming several number columns (one regression target each), every split holding
    them gains a column of that name with [a, b, c] per row (float32), which hf-aft then reads as one column of
    several targets; any other `label_column` leaves `data` as it is.

    Raises:
        AFTError: a named column holds something other than numbers.
    """
    names = [name.strip() for name in label_column.split(",")]
    if len(names) < 2 or any(label_column in split.column_names for split in data.values()):
        return data
    joined = {}
    for split_name, split in data.items():
        if not set(names) <= set(split.column_names):  # check_columns names what a used split lacks
            joined[split_name] = split
            continue
        for name in names:
            if _value_kind(split.features[name]) not in ("int", "float"):
                raise AFTError(f"--label_column {label_column!r} joins regression targets, but column {name!r} of "
                               f"the {split_name} split holds {split.features[name]}, not numbers: name number "
                               "columns only.")
        values = split.select_columns(names).to_pandas().astype("float64").to_numpy(np.float32)
        joined[split_name] = split.add_column(label_column, list(values), feature=datasets.Sequence(
            datasets.Value("float32"), length=len(names)))
    return datasets.DatasetDict(joined)


def is_token_model(model) -> bool:
    """Whether `model` (or the model a PEFT wrapper adapts) is a `*ForTokenClassification`: transformers' config has
    no problem_type for token classification."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__.endswith("ForTokenClassification")


def model_problem_type(model) -> str:
    """The problem type a loaded student was built for: token classification by its class, else its config's."""
    return TOKEN if is_token_model(model) else getattr(model.config, "problem_type", None) or SINGLE


def drop_other_labels(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """Without the columns transformers' collators read as labels (`labels`, `label`, `label_ids`) but the label
    `column`: the student reads `labels`, and a `label` beside it replaced it in every batch (a regression on `score`
    trained on an unrelated int `label`)."""
    other = [c for c in ("labels", "label", "label_ids") if c != column and c in dataset.column_names]
    return dataset.remove_columns(other) if other else dataset


def with_labels(dataset: datasets.Dataset, column: str, values, feature=None) -> datasets.Dataset:
    """`column` replaced by `values` in a `labels` column. Only that column is written (`add_column`): the others,
    the wide teacher features among them, are referenced, not copied; the teachers' provenance is kept."""
    info = dataset.info.description
    rest = drop_other_labels(dataset, column).remove_columns(column)
    encoded = rest.add_column("labels", values, feature=feature) if rest.column_names else datasets.Dataset.from_dict(
        {"labels": values}, features=datasets.Features({"labels": feature}) if feature else None)  # no column beside
    encoded.info.description = info
    return encoded


class ClassNames:
    """`id2label` and `label2id` of a `names` list (class names in id order)."""

    names: list[str]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


@dataclass
class MultiLabels(ClassNames):
    """A set of classes per row: class names in id order; `encode` writes a multi-hot float `labels` column."""

    names: list[str]
    column: str
    threshold: float = DEFAULT_THRESHOLD
    problem_type: str = MULTI
    is_class_label: bool = False
    trained: frozenset | None = None  # a ClassLabel's ids with training rows (its names may hold more)

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset, column: str) -> MultiLabels:
        inner = dataset.features[column].feature
        values = arrow_column(dataset, column)
        if isinstance(inner, datasets.ClassLabel):
            return cls(list(inner.names), column, is_class_label=True, trained=trained_ids(values, len(inner.names)))
        if values.null_count:
            raise AFTError(f"the label column {column!r} has rows with no list (missing values): give an empty list "
                           "for a row with no class, or drop those rows.")
        names = pc.unique(pc.list_flatten(values)).to_pylist()
        if None in names:
            raise AFTError(f"the label column {column!r} has a missing class inside a row's list: drop it.")
        names = [str(v) for v in sorted(names, key=lambda v: (str(type(v)), v))]
        warn_near_duplicates(names, column)
        return cls(names, column)

    def check_classes(self) -> None:
        if len(self.names) < 2:
            raise AFTError(f"the multi-label column {self.column!r} names {len(self.names)} class(es) "
                           f"({self.names}): a multi-label classifier needs at least 2.")

    def multi_hot(self, dataset: datasets.Dataset, split: str = "train") -> np.ndarray:
        """[rows, classes] float32 of 0 and 1.

        Raises:
            AFTError: a row naming a class the training split lacks, or a missing list.
        """
        rows = dataset[self.column]
        encoded = np.zeros((len(rows), len(self.names)), dtype=np.float32)
        index = class_index(self)
        for row, classes in enumerate(rows):
            if classes is None:
                raise AFTError(f"the {split} split's label column {self.column!r} has no list at row {row}: give an "
                               "empty list for a row with no class, or drop the row.")
            for value in classes:
                key = class_key(self, value)
                if key not in index:
                    raise AFTError(f"the {split} split's row {row} names class {class_name(self, value)!r}, which "
                                   f"the training split's {self.column!r} lacks (it has {trained_names(self)[:10]}): "
                                   "drop it or add it to training.")
                encoded[row, index[key]] = 1.0
        return encoded

    def check_split(self, dataset: datasets.Dataset, split: str) -> None:
        self.multi_hot(dataset, split)

    def encode(self, dataset: datasets.Dataset, split: str = "train") -> datasets.Dataset:
        check_label_source(dataset, self.column)
        return with_labels(dataset, self.column, list(self.multi_hot(dataset, split)),
                           datasets.Sequence(datasets.Value("float32")))


def _finite_numbers(row, width: int) -> bool:
    return isinstance(row, (list, tuple)) and len(row) == width and all(
        x is not None and math.isfinite(float(x)) for x in row)


@dataclass
class RegressionTargets(ClassNames):
    """A number per row, or several (one per `outputs`); `encode` writes them as float32 `labels` ([rows], or
    [rows, targets]: the head has one output per target), standardised with the training split's `mean` and `std`
    (per target) when `standardize` (so that a head starting near 0 and the task loss see targets of unit scale,
    whatever the data's units); `student.fold_target_scale` then makes the trained student predict in the data's
    units again."""

    column: str
    mean: float | list[float] = 0.0
    std: float | list[float] = 1.0
    standardize: bool = True
    problem_type: str = REGRESSION
    is_class_label: bool = False
    outputs: list[str] | None = None  # the targets' names when there are several

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset, column: str, standardize: bool = True) -> RegressionTargets:
        targets = cls(column, standardize=standardize)
        if getattr(dataset.features[column], "feature", None) is not None:  # a list of targets per row
            width = len(dataset[0][column] or ())
            parts = [name.strip() for name in column.split(",")]
            targets.outputs = parts if len(parts) == width else [f"{column}[{i}]" for i in range(width)]
        values = targets.values(dataset)
        constant = np.atleast_1d(values.std(0) == 0)
        if len(values) > 1 and constant.any():  # nothing to learn; Pearson, Spearman, the probe's score are NaN
            name = targets.names[int(np.argmax(constant))]
            raise AFTError(f"the regression target {name!r} is {float(np.atleast_2d(values.T)[constant][0][0]):g} "
                           "in every training row: there is nothing to learn from it (its correlations are "
                           "undefined); check --label_column, or drop that target.")
        if standardize:
            mean, std = values.mean(0), values.std(0)
            several = values.ndim == 2
            targets.mean, targets.std = (mean.tolist(), std.tolist()) if several else (float(mean), float(std))
        return targets

    @property
    def names(self) -> list[str]:  # the head's outputs
        return self.outputs or [self.column]

    @property
    def feature(self):
        """The `labels` column's feature: one float, or a fixed-length list of them."""
        return (datasets.Sequence(datasets.Value("float32"), length=len(self.outputs)) if self.outputs else
                datasets.Value("float32"))

    def check_classes(self) -> None:
        pass

    def values(self, dataset: datasets.Dataset, split: str = "train") -> np.ndarray:
        """[rows] float32, or [rows, targets] with several.

        Raises:
            AFTError: a missing, NaN or infinite target, or a row with another number of targets (naming the first
                such row).
        """
        raw = dataset[self.column]
        width = len(self.outputs or ())
        rows = raw if width else [[v] for v in raw]
        first = next((i for i, row in enumerate(rows) if not _finite_numbers(row, width or 1)), None)
        if first is not None:
            what = f"{width} finite numbers" if width else "a finite number"
            raise AFTError(f"the {split} split's target column {self.column!r} does not hold {what} at row {first} "
                           f"({raw[first]!r}): drop or fill those rows.")
        return np.asarray(raw, dtype=np.float32)

    def check_split(self, dataset: datasets.Dataset, split: str) -> None:
        self.values(dataset, split)

    def encode(self, dataset: datasets.Dataset, split: str = "train", in_data_units: bool = False) -> datasets.Dataset:
        """`labels` standardised as for training, or `in_data_units` (what a saved student predicts)."""
        check_label_source(dataset, self.column)
        values = self.values(dataset, split)
        if not in_data_units:
            values = ((values - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)
        return with_labels(dataset, self.column, list(values) if self.outputs else values, self.feature)


def task_description(task: str, problem_type: str) -> str:
    """The card's words for the student's task: "text classification", "multi-label image classification", "text
    regression", "token classification"."""
    modality = "image" if task.startswith("image") else "text"
    return {"regression": f"{modality} regression", "token_classification": "token classification",
            "multi_label_classification": f"multi-label {modality} classification"}.get(
        problem_type, task.replace("-", " "))
