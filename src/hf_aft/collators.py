"""Batches for the student: the teacher features set aside and stacked as float32, images through the student's own
image processor at batch time (so no pixel array is ever written to disk)."""

from __future__ import annotations

import numpy as np
import torch

from .distillation import TARGETS_COLUMN
from .errors import AFTError
from .features import FEATURES_COLUMN
from .images import to_rgb
from .word_batches import is_ragged, stack_word_features

FLOAT_COLUMNS = (FEATURES_COLUMN, TARGETS_COLUMN)


class TeacherFeatureCollator:
    """Wraps any collator: sets the `teacher_features` and `distill_targets` columns aside, collates the rest, stacks
    each as float32 ([B, sum of teacher widths], [B, classes])."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        aside = {c: [example.pop(c) for example in examples] for c in FLOAT_COLUMNS if examples and c in examples[0]}
        batch = self.collator(examples)
        for column, values in aside.items():  # per-word features (token classification): NaN-padded [B, W, width]
            batch[column] = (stack_word_features(values) if is_ragged(values) else
                             torch.as_tensor(np.asarray(values, dtype=np.float32)))
        return batch


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
