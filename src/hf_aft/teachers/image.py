"""A frozen image teacher: `AutoModel` with its own `AutoImageProcessor`.

Default pooling (`teacher_pooling="auto"`), decided from what the teacher returns: its `pooler_output` when it has one
whose weights came from the checkpoint (ResNet and MobileNet: global average pool; ConvNeXt: normalised global average
pool; ViT models saved with their pooler); else the CLS token for transformers that return a token sequence (ViT,
DeiT: what their classifiers read); else the global average of a CNN's [B, C, H, W] feature map. `mean` averages all
tokens or spatial positions, `cls` takes the first token, `pooler` the pooler output.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import AFTError, one_line
from ..images import to_rgb
from .loading import file_options, intended_load_report
from .spec import hub_revision
from .text import TextTeacher

IMAGE_POOLINGS = ("auto", "mean", "cls", "pooler")


class ImageTeacher(TextTeacher):
    """A frozen image model (`AutoModel`) with its own `AutoImageProcessor`; pooled per `IMAGE_POOLINGS`. Shares the
    text teacher's lazy loading, provenance and `free()`; the processor sits where a text teacher keeps its
    tokenizer."""

    modality = "image"
    backend = "torch"  # the ONNX Runtime backend runs text teachers only (backends.py)

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

        auto_class = AutoModelForImageClassification if self.pooling == "logits" else AutoModel
        revision = hub_revision(self.revision)
        try:
            self.tokenizer = AutoImageProcessor.from_pretrained(self.name, revision=revision,
                                                                **file_options(self.options))
            with intended_load_report():  # a classifier checkpoint loads as its backbone: its head is not needed
                self.model, info = auto_class.from_pretrained(self.name, revision=revision, output_loading_info=True,
                                                             **self.options)
        except Exception as error:
            if os.path.isdir(self.name) and not os.path.exists(os.path.join(self.name, "preprocessor_config.json")):
                raise AFTError(f"could not load image teacher {self.spec!r}: the folder has no image processor "
                               "(preprocessor_config.json): save the model's AutoImageProcessor beside it "
                               "(processor.save_pretrained(FOLDER)).") from error
            raise AFTError(f"could not load image teacher {self.spec!r} (model and image processor): "
                           f"{one_line(error)}") from error
        # A ViT saved from ViTForImageClassification has no pooler weights: AutoModel would add a random one.
        self.pooler_trained = not any("pooler" in key.split(".") for key in info.get("missing_keys", ()))
        if "device_map" not in self.options:
            self.model.to(self.device)
        self.model.eval().requires_grad_(False)

    def resolved_pooling(self, config=None) -> str:
        if self.pooling not in (*IMAGE_POOLINGS, "logits"):
            raise AFTError(f"teacher {self.spec!r} is an image model: teacher_pooling {self.pooling!r} applies to "
                           f"text only; choose one of {', '.join(IMAGE_POOLINGS)}.")
        return self.pooling  # `auto` is decided from the first batch's outputs (see the module docstring)

    def pool(self, outputs) -> torch.Tensor:
        if self.pooling == "logits":  # a classifier teacher's head (distillation targets)
            return outputs.logits
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
    def __call__(self, images: list, rows: list[int] | None = None) -> np.ndarray:
        if self.model is None:
            self.load()
        device = self.model.device
        rows = list(rows) if rows is not None else [None] * len(images)  # the dataset's rows, for error messages
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_rgb(image, self.column, row) for image, row in
                     zip(images[start : start + self.batch_size], rows[start : start + self.batch_size], strict=True)]
            pixels = self.tokenizer(images=chunk, return_tensors="pt")["pixel_values"]
            outputs = self.model(pixel_values=pixels.to(device, self.model.dtype))
            out.append(self.pool(outputs))  # stays on the device until the block is done (no per-batch sync)
            self.forward_passes += 1
        return torch.cat(out).float().cpu().numpy()
