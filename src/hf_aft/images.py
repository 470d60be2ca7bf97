"""Images: the one place where a dataset's images (PIL images, arrays or file paths) become PIL RGB images, and the
early check that a column can hold images. Teachers (teachers/image.py) and the student's collator (collators.py)
both read images through `to_rgb`."""

from __future__ import annotations

import io
import os
import reprlib

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from PIL import Image

from .errors import AFTError, first_line


def to_rgb(value, column: str, row: int | None = None) -> Image.Image:
    """A PIL image, an [H, W] / [H, W, C] array (uint8, or floats in [0, 1]), a file path, or a datasets Image dict
    (`{"bytes", "path"}`) -> a PIL RGB image; anything else is a one-line AFTError naming the column and row."""
    where = f"column {column!r}" + (f", row {row}" if row is not None else "")
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    if isinstance(value, (str, os.PathLike, io.BytesIO)):
        try:
            with Image.open(value) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            shown = str(value)[:80] if not isinstance(value, io.BytesIO) else "<bytes>"
            raise AFTError(f"{where}: {shown!r} is not a readable image file ({first_line(error)}).") from error
    if isinstance(value, (np.ndarray, list, torch.Tensor)):
        array = np.asarray(value)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or array.dtype == object:
            raise AFTError(f"{where}: an array of shape {array.shape} is not an image: use [H, W] or [H, W, C] with C "
                           "in 1, 3, 4.")
        if array.dtype.kind == "f":  # floats are taken as [0, 1] intensities
            array = np.clip(array * 255.0 + 0.5, 0, 255)
        elif array.dtype.kind not in "uib":
            raise AFTError(f"{where}: an array of {array.dtype} is not an image.")
        return Image.fromarray(array.astype(np.uint8)).convert("RGB")
    raise AFTError(f"{where} holds {type(value).__name__} {reprlib.repr(value)}, not an image: give PIL images, "
                   "[H, W(, C)] arrays or image file paths.")


def check_image_column(dataset: datasets.Dataset, column: str) -> None:
    """Fail early, naming the column and the first bad row, when a column can't hold images (numbers, missing
    values, strings that are not files). Decoding errors surface later, naming the file."""
    if column not in dataset.column_names:
        raise AFTError(f"image column {column!r} not found; the dataset has columns {dataset.column_names}. "
                       "Pass image_column=... (--image_column).")
    table = dataset.data.column(column)
    if table.null_count:
        row = int(pc.index(pc.is_null(table), True).as_py())
        raise AFTError(f"image column {column!r} has a missing image at row {row}: drop or fill those rows.")
    feature = dataset.features[column]
    if isinstance(feature, datasets.Image):
        return
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        for row, path in enumerate(dataset[column]):
            if not os.path.isfile(path):
                raise AFTError(f"image column {column!r}, row {row}: {path[:80]!r} is not an image file (the column "
                               "holds text, so each value must be the path of an image).")
        return
    if isinstance(feature, (datasets.List, datasets.Array2D, datasets.Array3D)):
        return  # arrays: their shapes are checked as they are converted
    to_rgb(dataset[0][column], column, 0)  # numbers, booleans...: raises, naming the first row
