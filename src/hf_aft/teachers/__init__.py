"""Teachers: how they are named and pinned (spec.py), how they load (loading.py), and how they turn a column of texts
(text.py) or images (image.py) into one feature vector per row. `make_teacher` is the one factory: it reads a
teacher's config (no weights), decides its modality and pooling, and returns a teacher that loads only when it first
runs, so that a cache hit never loads it."""

from __future__ import annotations

import os

import datasets
import torch

from ..data import check_texts
from ..errors import AFTError, require_extra
from ..words import is_word_lists
from .backends import TEACHER_BACKENDS, check_backend
from .image import IMAGE_POOLINGS, ImageTeacher
from .loading import (
    TEACHER_DTYPES,
    cap_max_length,
    gguf_header_config,
    load_config,
    load_options,
    teacher_modality,
    token_limit,
)
from .pooling import POOLINGS, pool
from .spec import (
    check_distinct_teachers,
    display_names,
    gguf_file_revision,
    parse_teacher,
    pinned_locally,
    resolve_revision,
    same_teacher,
    short_name,
    split_gguf,
    teacher_label,
)
from .text import MAP_BATCH_SIZE, TextTeacher

__all__ = ["IMAGE_POOLINGS", "MAP_BATCH_SIZE", "POOLINGS", "TEACHER_BACKENDS", "TEACHER_DTYPES", "ImageTeacher",
           "TextTeacher", "check_distinct_teachers", "display_names", "load_options", "make_teacher", "parse_teacher",
           "pool", "same_teacher", "short_name", "teacher_label"]


def _revision_of(spec: str, name: str, pinned: str | None, gguf_file: str | None) -> str:
    if gguf_file and os.path.isdir(name):
        if pinned:
            raise pinned_locally("teacher", spec, pinned, "GGUF file")
        return gguf_file_revision(name, gguf_file)
    return resolve_revision(name, pinned)


def _check_text_column(dataset: datasets.Dataset, spec: str, config, text_column: str, words: bool = False) -> None:
    feature = dataset.features.get(text_column)
    if feature is None:
        raise AFTError(f"teacher {spec!r} is a text model ({config.model_type}) but the dataset has no text column "
                       f"{text_column!r} (columns {dataset.column_names}): choose an image teacher for images, or "
                       "pass --text_column (text_column= in Python) naming the texts.")
    if words and is_word_lists(feature):  # token classification: a list of words per row (word_features.py)
        return
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise AFTError(f"teacher {spec!r} is a text model ({config.model_type}) but column {text_column!r} holds "
                       f"{feature}, not text: choose an image teacher for images, or another --text_column.")
    check_texts(dataset, text_column)  # no missing text: one line naming the row, before the teacher runs


def make_teacher(dataset: datasets.Dataset, spec: str, pooling: str, max_length: int, batch_size: int,
                 device: torch.device, options: dict, text_column: str = "text", image_column: str | None = None,
                 backend: str = "torch", export_root=None, words: bool = False):
    """The teacher for `spec` (text or image, from its config), the column it reads, and what beyond the text
    defaults must enter its cache fingerprint (the image modality, a GGUF file, a non-float32 dtype, a backend other
    than torch). A teacher whose modality doesn't match its column, or that `backend` cannot run, is one AFTError
    line; ONNX exports go under `export_root` (backends.py). `words`: the column holds a list of words per row
    (token classification, word_features.py)."""
    spec = os.fspath(spec)
    source, gguf_file = split_gguf(spec)
    if gguf_file:  # transformers imports gguf only when the weights load, after other teachers may have run
        require_extra("gguf", f"GGUF teacher {spec!r}")
    name, pinned = parse_teacher(source)
    revision = _revision_of(spec, name, pinned, gguf_file)
    local_gguf = os.path.join(name, gguf_file) if gguf_file and os.path.isdir(name) else None
    options = {**options, **({"gguf_file": gguf_file} if gguf_file else {})}
    config = (local_gguf and gguf_header_config(local_gguf)) or load_config(spec, name, revision, options)
    extra_key = [f"gguf:{gguf_file}"] if gguf_file else []
    if options["dtype"] != torch.float32:
        extra_key.append(str(options["dtype"]))
    check_backend(backend, spec, teacher_modality(config), device, options.get("device_map"))
    if teacher_modality(config) == "image":
        if image_column is None:
            raise AFTError(f"teacher {spec!r} is an image model ({config.model_type}): it cannot read the text column "
                           f"{text_column!r}: pass --image_column (image_column= in Python) naming the images, or "
                           "choose a text teacher.")
        teacher = ImageTeacher(spec, name, revision, pooling, 0, batch_size, device, options, image_column)
        teacher.pooling = teacher.resolved_pooling(config)
        return teacher, image_column, ["image", *extra_key]
    _check_text_column(dataset, spec, config, text_column, words)
    max_length = cap_max_length(f"teacher {spec!r}", max_length, token_limit(config), "--teacher_max_length")
    teacher = TextTeacher(spec, name, revision, pooling, max_length, batch_size, device, options, text_column)
    teacher.pooling = teacher.resolved_pooling(config)
    teacher.label = teacher_label(spec)
    teacher.backend, teacher.export_root = backend, export_root
    return teacher, text_column, extra_key + ([f"backend:{backend}"] if backend != "torch" else [])
