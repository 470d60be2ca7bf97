"""What the feature functions of the Python API are given, refused in one line before any teacher runs rather than
deep in torch, datasets or the teachers' batching: `extract_teacher_features`' dataset, teachers, counts and device,
a `TeacherInfo`'s width, and what a `map_beside_features` function returns (its rows are joined back to the features
row by row)."""

from __future__ import annotations

import os
from typing import Literal, get_args

import pyarrow as pa
import torch

from .dataset_types import check_one_split
from .errors import AFTError, first_line
from .images import check_image_column
from .option_checks import check_count
from .teachers import POOLINGS, check_distinct_teachers

FEATURES_COLUMN = "teacher_features"
FeatureDtype = Literal["float32", "float16"]
FEATURE_DTYPES = get_args(FeatureDtype)


def check_extraction(dataset, teachers, pooling, feature_dtype, text_column, image_column, batch_size,
                     max_length, device) -> list[str]:
    """`extract_teacher_features`' arguments (see there), checked before any teacher loads, so that a bad batch
    size is refused on a cache hit too. Returns the teachers as a list of strings."""
    teachers = [teachers] if isinstance(teachers, (str, os.PathLike)) else list(teachers or [])
    if not teachers:
        raise AFTError("no teachers given: pass at least one Hub id or local folder.")
    check_distinct_teachers(teachers)
    if pooling not in (*POOLINGS, "logits"):  # logits: a task teacher's head, for distillation (distillation.py)
        raise AFTError(f"unknown teacher pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")
    check_one_split(dataset, "extract_teacher_features' dataset", "extract_teacher_features(data['train'], ...), a "
                    "split at a time; hf-aft features saves every split with its features")
    if len(dataset) == 0:
        raise AFTError("the dataset is empty: there is nothing to compute teacher features for.")
    if feature_dtype not in FEATURE_DTYPES:
        raise AFTError(f"unknown feature_dtype {feature_dtype!r}: choose one of {', '.join(FEATURE_DTYPES)}.")
    if text_column not in dataset.column_names and image_column is None:
        raise AFTError(f"text column {text_column!r} not found; the dataset has columns {dataset.column_names}. "
                       "Pass text_column=... (--text_column), or image_column=... (--image_column) for images.")
    if image_column is not None:
        check_image_column(dataset, image_column)
    check_count(batch_size, "batch_size")
    check_count(max_length, "max_length")
    check_device(device)
    return [os.fspath(t) for t in teachers]


def check_device(device) -> None:
    """`device` (None: the default) names a device this machine has: torch's own errors for another are an assertion
    deep in CUDA's initialisation, or a list of every device type torch knows.

    Raises:
        AFTError: not a torch device, or one this machine does not have (the line lists those it has).
    """
    if device is None:
        return
    try:
        place = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise AFTError(f"device={device!r} is not a torch device: {_devices_here()}.") from error
    if place.type == "cpu":
        return
    backend = getattr(torch, place.type, None)  # torch.cuda, torch.mps, torch.xpu...
    available = getattr(backend, "is_available", lambda: False)()
    count = getattr(backend, "device_count", lambda: 1)() if available else 0
    if not available or place.index is not None and place.index >= count:
        raise AFTError(f"device={device!r} is not available here: {_devices_here()}.")


def _devices_here() -> str:
    found = ["cpu"] + ([f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [])
    found += ["mps"] if torch.backends.mps.is_available() else []
    return f"this machine has {', '.join(map(repr, found))} (device=None uses CUDA when there is one, else the CPU)"


def check_teacher_width(dim) -> None:
    """A `TeacherInfo`'s `dim`: the teacher's number of features, a whole number >= 1."""
    check_count(dim, "TeacherInfo dim (the teacher's feature width)")


def map_to_join(rest, function, map_kwargs: dict):
    """`rest.map(function, **map_kwargs)` for `map_beside_features`: the other columns, mapped so that they can be
    joined back to the features column row by row (as many rows as before, no `teacher_features` column).

    Raises:
        AFTError: `function` returned another number of rows, or a `teacher_features` column.
    """
    keep = "the teacher features are joined back row by row, so it must keep every row (filter or split rows with " \
        "dataset.filter or dataset.map instead)"
    try:
        mapped = rest.map(function, **map_kwargs)
    except pa.ArrowInvalid as error:  # new columns of another length than the batch's own
        if "expected length" not in str(error):
            raise
        raise AFTError(f"the function given to map_beside_features changed a batch's number of rows "
                       f"({first_line(error)}): {keep}.") from error
    if len(mapped) != len(rest):
        raise AFTError(f"the function given to map_beside_features made {len(mapped)} rows of {len(rest)}: {keep}.")
    if FEATURES_COLUMN in mapped.column_names:
        raise AFTError(f"the function given to map_beside_features returned a {FEATURES_COLUMN!r} column: it runs "
                       "beside that column, which stays as it is; return other columns only (or rename yours).")
    return mapped
