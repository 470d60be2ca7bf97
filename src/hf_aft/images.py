"""Images: teachers that read an image column, the student's on-the-fly preprocessing, and the one place where a
dataset's images (PIL images, arrays or file paths) become PIL RGB images.

Each model preprocesses with its own `AutoImageProcessor` (resize, crop, normalisation): every teacher with its own
when its features are extracted, the student with its own in `ImageCollator` at batch time, so pixel arrays are never
written to disk and a change of student needs no new teacher features.

Default pooling of an image teacher (`teacher_pooling="auto"`), decided from what the teacher returns:
its `pooler_output` when it has one whose weights came from the checkpoint (ResNet and MobileNet: global average pool;
ConvNeXt: normalised global average pool; ViT models saved with their pooler); else the CLS token for transformers
that return a token sequence (ViT, DeiT: what their classifiers read); else the global average of a CNN's [B, C, H, W]
feature map. `mean` averages all tokens or spatial positions, `cls` takes the first token, `pooler` the pooler output.
"""

from __future__ import annotations

import io
import os
import reprlib

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from PIL import Image

from .errors import AFTError
from .features import _file_options, _first_line, _Teacher

IMAGE_POOLINGS = ("auto", "mean", "cls", "pooler")


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
            raise AFTError(f"{where}: {shown!r} is not a readable image file ({_first_line(error)}).") from None
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


class ImageTeacher(_Teacher):
    """A frozen image model (`AutoModel`) with its own `AutoImageProcessor`; pooled per `IMAGE_POOLINGS`."""

    modality = "image"

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel

        hub_revision = None if self.revision.startswith("local-") else self.revision
        try:  # the processor sits where a text teacher keeps its tokenizer, so `free()` drops both the same way
            self.tokenizer = AutoImageProcessor.from_pretrained(self.name, revision=hub_revision,
                                                                **_file_options(self.options))
            self.model, info = AutoModel.from_pretrained(self.name, revision=hub_revision, output_loading_info=True,
                                                         **self.options)
        except Exception as error:
            raise AFTError(f"could not load image teacher {self.spec!r} (model and image processor): "
                           f"{_first_line(error)}") from None
        # A ViT saved from ViTForImageClassification has no pooler weights: AutoModel would add a random one.
        self.pooler_trained = not any("pooler" in key.split(".") for key in info.get("missing_keys", ()))
        if "device_map" not in self.options:
            self.model.to(self.device)
        self.model.eval().requires_grad_(False)

    def resolved_pooling(self, config=None) -> str:
        if self.pooling not in IMAGE_POOLINGS:
            raise AFTError(f"teacher {self.spec!r} is an image model: teacher_pooling {self.pooling!r} applies to "
                           f"text only; choose one of {', '.join(IMAGE_POOLINGS)}.")
        return self.pooling  # `auto` is decided from the first batch's outputs (see the module docstring)

    def pool(self, outputs) -> torch.Tensor:
        pooler = getattr(outputs, "pooler_output", None)
        states = outputs.last_hidden_state
        if self.pooling == "auto":
            if pooler is not None and self.pooler_trained:
                self.pooling = "pooler"
            else:
                self.pooling = "cls" if states.dim() == 3 else "mean"
        if self.pooling == "pooler":
            if pooler is None:
                raise AFTError(f"teacher {self.spec!r} has no pooler output: use teacher_pooling mean or cls.")
            return pooler.flatten(1)  # ResNet's is [B, C, 1, 1]
        if self.pooling == "cls":
            if states.dim() != 3:
                raise AFTError(f"teacher {self.spec!r} returns a feature map, which has no CLS token: use mean.")
            return states[:, 0]
        return states.mean(1) if states.dim() == 3 else states.flatten(2).mean(-1)

    @torch.inference_mode()
    def __call__(self, images: list) -> np.ndarray:
        if self.model is None:
            self.load()
        device = self.model.device
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_rgb(image, self.column) for image in images[start : start + self.batch_size]]
            pixels = self.tokenizer(images=chunk, return_tensors="pt")["pixel_values"]
            outputs = self.model(pixel_values=pixels.to(device, self.model.dtype))
            out.append(self.pool(outputs).float().cpu().numpy())
            self.forward_passes += 1
        return np.concatenate(out).astype(np.float32, copy=False)


class ImageCollator:
    """The student's collator for image data: each batch's images through the student's image processor into
    `pixel_values`; every other field (labels...) collated by `default_data_collator`."""

    def __init__(self, image_processor, image_column: str = "image"):
        if image_processor is None or not callable(image_processor) or not hasattr(image_processor, "preprocess"):
            raise AFTError(f"image_column={image_column!r} needs the student's image processor: pass "
                           "processing_class=AutoImageProcessor.from_pretrained(...).")
        self.image_processor, self.image_column = image_processor, image_column

    def __call__(self, examples: list[dict]) -> dict:
        from transformers import default_data_collator

        images = [to_rgb(example.pop(self.image_column), self.image_column) for example in examples]
        batch = default_data_collator(examples) if examples[0] else {}
        batch["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return batch
