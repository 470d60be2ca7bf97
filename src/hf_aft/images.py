"""Images: the one place where a dataset's images (PIL images, arrays or file paths) become PIL RGB images, and the
early check that a column can hold images. Teachers (teachers/image.py) and the student's collator (collators.py)
both read images through `to_rgb`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import reprlib
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from PIL import Image

from .data_files import IMAGE_SUFFIXES
from .errors import AFTError, first_line
from .filesystems import write_atomically


def to_rgb(value, column: str, row: int | None = None, split: str | None = None) -> Image.Image:
    """A PIL image (any mode), an [H, W] / [H, W, C] array (C in 1..4), a file path, or a datasets Image dict
    (`{"bytes", "path"}`) -> an 8-bit PIL RGB image with the same picture; anything else is a one-line AFTError naming
    the column and row (and the split, when given).

    Wide pixel types keep their range: 16-bit images (PIL modes I;16*, uint16 arrays) are scaled from 0..65535 to
    0..255 (x >> 8); other integer images (PIL mode I, int32/int64 arrays) are 8-bit when their values fit 0..255 and
    16-bit when they fit 0..65535; floats (PIL mode F, float arrays) are intensities in [0, 1]. Values outside those
    ranges are refused rather than clipped or wrapped."""
    where = (f"the {split} split's " if split else "") + f"column {column!r}"
    where += f", row {row}" if row is not None else ""
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    if isinstance(value, (str, os.PathLike, io.BytesIO)):
        shown = str(value)[:80] if not isinstance(value, io.BytesIO) else "<bytes>"
        try:
            with Image.open(value) as image:
                return _image_to_rgb(image, f"{where} ({shown!r})")
        except AFTError:  # a ValueError too: the file opened, and the message names what its pixels hold
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise AFTError(f"{where}: {shown!r} is not a readable image file ({first_line(error)}).") from error
    if isinstance(value, Image.Image):  # datasets decodes lazily: the pixels are read here
        try:
            return _image_to_rgb(value, where)
        except OSError as error:
            raise AFTError(f"{where}: the image does not decode ({first_line(error)}): replace or drop that "
                           "file.") from error
    if isinstance(value, (np.ndarray, list, torch.Tensor)):
        return _array_to_rgb(np.asarray(value), where)
    raise AFTError(f"{where} holds {type(value).__name__} {reprlib.repr(value)}, not an image: give PIL images, "
                   "[H, W(, C)] arrays or image file paths.")


def _image_to_rgb(image: Image.Image, where: str) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit integers or floats: PIL would clip them to 255
        return _array_to_rgb(np.asarray(image), where, f"mode {image.mode}")
    try:
        return (image.convert("LA") if image.mode == "La" else image).convert("RGB")  # La: premultiplied alpha
    except ValueError as error:
        raise AFTError(f"{where}: an image of mode {image.mode} cannot be converted to RGB ({first_line(error)}): "
                       "convert the images to RGB or L first.") from error


def _array_to_rgb(array: np.ndarray, where: str, kind: str | None = None) -> Image.Image:
    kind = kind or f"an array of {array.dtype}"
    if array.ndim == 3 and array.shape[-1] in (1, 2):  # gray, gray + alpha
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or array.dtype == object:
        raise AFTError(f"{where}: an array of shape {array.shape} is not an image: use [H, W] or [H, W, C] with C "
                       "in 1..4.")
    return Image.fromarray(_to_uint8(array, where, kind)).convert("RGB")


def _to_uint8(array: np.ndarray, where: str, kind: str) -> np.ndarray:
    """Pixel values as uint8, keeping their range (see `to_rgb`)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8) * 255
    if array.dtype.kind == "f":
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if not (np.isfinite([low, high]).all() and -1e-3 <= low and high <= 1 + 1e-3):
            raise AFTError(f"{where}: {kind} holds values in [{low:g}, {high:g}]; float images must be intensities in "
                           "[0, 1]: divide by 255 (or the maximum) first.")
        return np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.dtype.kind not in "ui":
        raise AFTError(f"{where}: {kind} is not an image.")
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2 and low >= 0:
        return (array >> 8).astype(np.uint8)  # 16 bits: 0..65535 -> 0..255
    if low >= 0 and high <= 255:
        return array.astype(np.uint8)
    if low >= 0 and high <= 65535:
        return (array.astype(np.uint32) >> 8).astype(np.uint8)
    raise AFTError(f"{where}: {kind} holds values in [{low}, {high}], outside 8-bit (0..255) and 16-bit (0..65535) "
                   "images: scale them to 0..255 first.")


def check_image_column(dataset: datasets.Dataset, column: str, split: str | None = None) -> None:
    """Fail early, naming the column and the first bad row (and `split`, when given), when a column can't hold images
    (numbers, missing values, strings that are not files, files that do not open)."""
    if column not in dataset.column_names:
        raise AFTError(f"image column {column!r} not found; the dataset has columns {dataset.column_names}. "
                       "Pass --image_column (image_column= in Python) naming the column of images.")
    table = dataset.data.column(column)
    if table.null_count:
        row = int(pc.index(pc.is_null(table), True).as_py())
        where = f"the {split} split's " if split else ""
        raise AFTError(f"{where}image column {column!r} has a missing image at row {row}: drop or fill those rows.")
    feature = dataset.features[column]
    if isinstance(feature, datasets.Image):
        return check_images_open(dataset, column, split)
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        check_image_paths(dataset, column, split)
        return check_images_open(dataset, column, split)
    if isinstance(feature, (datasets.List, datasets.Array2D, datasets.Array3D)):
        return  # arrays: their shapes are checked as they are converted
    to_rgb(dataset[0][column], column, 0)  # numbers, booleans...: raises, naming the first row


def check_image_paths(dataset: datasets.Dataset, column: str, split: str | None = None) -> None:
    """Each path of a text column names a file (missing values are left to the caller's check); `split` names it."""
    for row, path in enumerate(dataset[column]):
        if path is not None and not os.path.isfile(path):
            where = "" if os.path.isabs(path) else f"; a relative path is read from {os.getcwd()!r}"
            split_of = f"the {split} split's " if split else ""
            raise AFTError(f"{split_of}image column {column!r}, row {row}: {path[:80]!r} is not an image file (the "
                           f"column holds text, so each value must be the path of an image{where}).")


def check_images_open(dataset: datasets.Dataset, column: str, split: str | None = None) -> None:
    """Every image file (or embedded image) of the column opens as an image and is whole (`read_whole`), so an empty,
    truncated or mislabelled file is one line naming the row before any model runs, not a traceback at evaluation
    after training. A dataset is read once per process (the data step and the trainer both check it), and a datasets
    `Image` column once per machine (`read_before`)."""
    marker = read_before(dataset, column)
    if (dataset._fingerprint, column) in _OPENED or (marker is not None and marker.exists()):
        return
    for start, batch in enumerate_batches(undecoded(dataset, column), column):
        for row, value in enumerate(batch, start):
            source = io.BytesIO(value["bytes"]) if isinstance(value, dict) and value.get("bytes") else (
                value.get("path") if isinstance(value, dict) else value)
            try:
                read_whole(source)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # SyntaxError: PIL
                path = value.get("path") if isinstance(value, dict) else None  # an embedded image keeps its name
                shown = str(source)[:120] if not isinstance(source, io.BytesIO) else (path or "<embedded bytes>")
                where = f"the {split} split's " if split else ""
                raise AFTError(f"{where}image column {column!r}, row {row}: {shown!r} is not a readable image "
                               f"({first_line(error)}): replace or drop that file.") from error
    _OPENED.add((dataset._fingerprint, column))
    try:
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    except OSError:  # a read-only cache: read again next time
        pass


def read_before(dataset: datasets.Dataset, column: str) -> Path | None:
    """The file that says a datasets `Image` column was read whole on this machine: its name is the dataset's
    fingerprint, which datasets derives from the images' bytes, or for an image folder from the files' paths and
    modification times (a file replaced is read again). None for paths in a text column (the fingerprint sees the
    paths, not the files)."""
    if not isinstance(dataset.features.get(column), datasets.Image):
        return None
    return Path(datasets.config.HF_DATASETS_CACHE) / "hf_aft_images_read" / f"{dataset._fingerprint}-{column}"


def read_whole(source) -> None:
    """Read an image file to its end at a fraction of a full decode (about 0.05 ms for a 640x480 PNG, 0.5 ms for a
    JPEG, against 2-5 ms decoded): a PNG's chunks and checksums without inflating them (PIL's `verify`), a JPEG
    decoded at 1/8 scale (PIL's `draft`), other formats decoded. A truncated file raises OSError."""
    with Image.open(source) as image:
        if image.format == "PNG":
            image.verify()
        else:
            image.draft(image.mode, (1, 1))  # only JPEG decoders take a draft; the rest ignore it
            image.load()


_OPENED: set[tuple[str, str]] = set()  # (fingerprint, column) of the datasets whose images all opened


def undecoded(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """The dataset with a datasets `Image` column left encoded (`{"bytes", "path"}` per row): reading it opens no
    image, and `to_rgb` decodes it, naming the row of a file that does not decode."""
    if isinstance(dataset.features[column], datasets.Image) and dataset.features[column].decode:
        return dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def enumerate_batches(dataset: datasets.Dataset, column: str, size: int = 256):
    """(first row, values) per batch of one column."""
    for index, batch in enumerate(dataset.select_columns([column]).iter(batch_size=size)):
        yield index * size, batch[column]


def image_digests(dataset: datasets.Dataset, column: str, split: str | None = None) -> list[str]:
    """One SHA-256 per row of an image column, to find the same image in two splits (hashlib): of the 8-bit RGB pixels
    the models see (`to_rgb`), whatever holds them: a file, embedded bytes, an array. So the same picture re-saved
    (PNG optimised, BMP, another mode) or stored as an array is found; a lossy re-encoding is not. Decoding
    costs about 5-15 ms a 640x480 image on 2 cores (file bytes alone: 1 ms), so the digests are kept once per process
    and, for a datasets `Image` column, on disk under the fingerprint `read_before` names (a rerun decodes nothing).
    An image that cannot be read is refused naming its row, and `split` (the split's name) when given."""
    key = (dataset._fingerprint, column)
    if key in _DIGESTS:
        return _DIGESTS[key]
    marker = read_before(dataset, column)
    stored = None if marker is None else marker.with_name(f"{marker.name}.digests-{DIGESTS_VERSION}.json")
    try:
        digests = json.loads(stored.read_text()) if stored is not None else None
    except (OSError, ValueError):
        digests = None
    if not isinstance(digests, list) or len(digests) != len(dataset):
        digests = [_digest(value, column, row, split) for start, batch in enumerate_batches(
            undecoded(dataset, column), column) for row, value in enumerate(batch, start)]
        _store(stored, digests)
    _DIGESTS[key] = digests
    return digests


def _store(path: Path | None, digests: list[str]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(digests))
    except OSError:  # a read-only or full cache: decode again next time
        pass


DIGESTS_VERSION = "rgb1"  # bump when `_digest` changes: digests kept on disk by an older one are not read
_DIGESTS: dict[tuple[str, str], list[str]] = {}  # (fingerprint, column) -> each row's image SHA-256


def _digest(value, column: str, row: int | None = None, split: str | None = None) -> str:
    """SHA-256 of the image as the models see it: `to_rgb`'s 8-bit RGB pixels and their shape (an L image and its RGB
    copy, a palette PNG, an RGBA one with opaque alpha, a float array of the same intensities are one picture)."""
    pixels = np.asarray(to_rgb(value, column, row, split))
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def looks_like_image_path(value: str) -> bool:
    """A file, or a name with an image file's suffix (`.png`, `.jpg`...)."""
    return os.path.isfile(value) or os.path.splitext(value)[1].lower() in IMAGE_SUFFIXES
