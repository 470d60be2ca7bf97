"""The classes a classifier's training split holds, shared by every label form (`data.Labels`,
`targets.MultiLabels`, `words.TokenLabels`): a `ClassLabel`'s names may name more (an image folder's class folders
of every split, a dataset's whole tag set), which the student's head keeps, so that its class ids stay the data's,
but cannot learn. An eval or validation split naming one is refused in the same line for one class per row, a set
per row or a class per word."""

from __future__ import annotations

import logging

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from .columns import arrow_column
from .errors import AFTError, warn_once

logger = logging.getLogger(__name__)


def present_values(column: pa.ChunkedArray) -> list:
    """The distinct values of a label column (Arrow), each class in a row's list counted; missing values are left
    to the row checks, which name their row."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
            pa.types.is_fixed_size_list(column.type):
        column = pc.list_flatten(column)
    return [value for value in pc.unique(column).to_pylist() if value is not None]


def trained_ids(column: pa.ChunkedArray, count: int) -> frozenset:
    """The ids of a `ClassLabel` with `count` names that the training split's label column (Arrow) holds."""
    return frozenset(v for v in present_values(column) if isinstance(v, int) and 0 <= v < count)


def class_index(labels) -> dict:
    """A label value -> its class id, for the classes with a training row: a `ClassLabel`'s ids in `labels.trained`
    (all of them where that is not known), else the names (read from the training split)."""
    if labels.is_class_label:
        trained = labels.trained if labels.trained is not None else range(len(labels.names))
        return {i: i for i in sorted(trained)}
    return labels.label2id


def class_key(labels, value):
    """How `class_index` looks up a value of the label column: a `ClassLabel` by id, anything else as a string."""
    return value if labels.is_class_label else str(value)


def trained_names(labels) -> list[str]:
    """The names of the classes with a training row, in id order."""
    return [labels.names[i] for i in class_index(labels).values()]


def class_name(labels, value) -> str:
    """A label value as a message names it: a `ClassLabel` id by its name (an id outside its names as it is)."""
    if labels.is_class_label and isinstance(value, int) and 0 <= value < len(labels.names):
        return labels.names[value]
    return value if labels.is_class_label else str(value)


def check_known_classes(labels, column: pa.ChunkedArray, split: str, role: str = "eval",
                        flag: str = "--eval_split") -> None:
    """The `role` split's label column (Arrow: a class per row, or a list of them) names only classes the training
    split has.

    Raises:
        AFTError: naming the first classes it lacks, those it has, and the way out (`flag`).
    """
    index = class_index(labels)
    unknown = sorted({class_name(labels, v) for v in present_values(column) if class_key(labels, v) not in index},
                     key=str)
    if unknown:
        raise AFTError(f"the {role} split {split!r} has labels {unknown[:5]} that the training split lacks (it has "
                       f"{trained_names(labels)[:10]}): the student cannot predict them; drop those rows or choose "
                       f"another {flag}.")


def warn_untrained(labels) -> None:
    """Say once which of a `ClassLabel`'s names no training row has (and, the eval split being checked, no eval row
    either): the head keeps an output for each that nothing trains, and no metric counts one the student does not
    predict."""
    if not labels.is_class_label or labels.trained is None:
        return
    unused = [name for i, name in enumerate(labels.names) if i not in labels.trained]
    if unused:
        warn_once(logger, f"hf-aft: no training row has the class(es) {unused[:5]} of the label column "
                  f"{labels.column!r} ({len(unused)} of its {len(labels.names)} names): the student keeps an output "
                  "for each, so that its class ids stay the data's, but never learns them (no metric counts one it "
                  "does not predict); drop those names from the ClassLabel if they are not classes of this task.")


def warn_near_duplicates(names: list[str], column: str) -> None:
    """Say once when class names differ only in spacing or case ('negative' and 'negative ', a stray space in a
    csv): each is trained as a class of its own, with a head output and rows of its own."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(" ".join(name.split()).casefold(), []).append(name)
    alike = [group for group in groups.values() if len(group) > 1]
    if alike:
        shown = "; ".join(" / ".join(repr(name) for name in group) for group in alike[:3])
        warn_once(logger, f"hf-aft: the label column {column!r} has classes that differ only in spacing or case "
                  f"({shown}): each is a class of its own; make them one in the data if they are.")


def align_class_ids(dataset, column: str, names: list[str], split: str):
    """`dataset` whose `ClassLabel` label column (or list of them: a set of classes, a class per word) names the
    classes in another order than the training split's `names` (two sets each class-encoded on its own, say): its
    ids re-mapped to the training split's by name, so that id 1 means the same class in both (negative ids, hidden
    or ignored labels, are kept). Anything else is returned as it is.

    Raises:
        AFTError: a row of `split` naming a class the training split's `names` lack.
    """
    feature = dataset.features.get(column)
    inner = feature.feature if isinstance(feature, datasets.List) else feature
    if not isinstance(inner, datasets.ClassLabel) or list(inner.names) == list(names):
        return dataset
    ids = present_values(arrow_column(dataset, column))
    used = {inner.names[i] for i in ids if 0 <= i < len(inner.names)}
    unknown = sorted(used - set(names))
    if unknown:
        raise AFTError(f"the {split} split's {column!r} names classes {unknown[:5]} that the training split's labels "
                       f"lack ({list(names)[:10]}): drop those rows, or give both splits one ClassLabel.")
    to_train = {i: names.index(name) for i, name in enumerate(inner.names) if name in names}
    warn_once(logger, f"hf-aft: the {split} split's ClassLabel {column!r} orders its classes otherwise than the "
              "training split's; its class ids were mapped to the training split's by name.")

    def remap(value):
        return [remap(v) for v in value] if isinstance(value, list) else to_train.get(value, value)

    aligned = datasets.ClassLabel(names=list(names))
    features = dataset.features.copy()
    features[column] = datasets.List(aligned) if isinstance(feature, datasets.List) else aligned
    return dataset.map(lambda batch: {column: [remap(v) for v in batch[column]]}, batched=True, features=features,
                       desc="Aligning class ids")


def class_label_names(feature) -> list[str]:
    """The class names of a ClassLabel, or of the ClassLabel a list holds (a class per word); [] for other features."""
    return list(getattr(getattr(feature, "feature", feature), "names", None) or [])


def align_eval_sets(eval_dataset, column: str, names: list[str]):
    """Eval sets whose ClassLabel orders the classes otherwise, their ids mapped to the training set's
    (`align_class_ids`): else each id would be scored as another class."""
    def aligned(dataset, name: str):
        return align_class_ids(dataset, column, names, name) if isinstance(dataset, datasets.Dataset) else dataset
    if not names or eval_dataset is None:
        return eval_dataset
    if isinstance(eval_dataset, dict):
        return {key: aligned(value, f"eval {key!r}") for key, value in eval_dataset.items()}
    return aligned(eval_dataset, "eval")


def check_class_orders(parquet_files: list[str]) -> None:
    """The parquet files of one dataset name each ClassLabel column's classes in one order: datasets reads every file
    with the first one's features, so another file's ids would silently mean other classes.

    Raises:
        AFTError: a ClassLabel column whose names differ between two files (both named).
    """
    import json

    import pyarrow.parquet as pq

    seen: dict[str, tuple[str, list]] = {}
    for path in parquet_files:
        metadata = pq.read_schema(path).metadata or {}
        features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        for column, feature in features.items():
            names = feature.get("names") if isinstance(feature, dict) else None
            first = seen.setdefault(column, (path, names)) if names else None
            if first and first[1] != names:
                raise AFTError(f"the ClassLabel {column!r} names its classes {first[1][:5]} in {first[0]!r} and "
                               f"{names[:5]} in {path!r}: datasets reads every file with the first one's names, so "
                               "the ids would mean other classes; save both with one ClassLabel (cast_column).")
