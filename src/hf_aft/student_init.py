"""A student that starts from a pretrained encoder's lower layers (DistilBERT-style initialisation, Sanh et al. 2019):
`hf-aft student --from MODEL --num_layers K`, and the demo's and benchmarks' 3-layer students."""

from __future__ import annotations

import os

from .errors import AFTError
from .hub_reach import offline_if_unreachable
from .option_checks import check_count
from .outputs import share_like_other_files
from .student import student_load_failure
from .teachers.content_hash import check_model_weights
from .teachers.loading import intended_load_report, teacher_modality
from .tokens import check_vocabulary


def save_truncated_student(source: str, output_dir: str, num_layers: int, overwrite: bool = False) -> str:
    """Save the first `num_layers` layers of a pretrained text encoder or decoder (DistilBERT-style initialisation)
    with its tokenizer: a small student that starts from the teacher's own lower layers. Keeps everything else
    (embeddings, widths); the classification head is added when training loads it. Image models are not cut (see
    Raises). Returns `output_dir`.

    Raises:
        AFTError: `num_layers` not a whole number >= 1; `output_dir` is the source's folder, or holds files (unless
            `overwrite`); a source that does not load, is an image model, has no layer count, or fewer layers than
            `num_layers`.
    """
    from transformers import AutoConfig, AutoModel, AutoProcessor, PreTrainedTokenizerBase

    source, output_dir = os.fspath(source), os.fspath(output_dir)
    num_layers = check_count(num_layers, "num_layers")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise AFTError(f"output_dir {output_dir!r} is a file: choose a folder (a new or empty one).")
    if os.path.exists(source) and os.path.realpath(source) == os.path.realpath(output_dir):
        raise AFTError(f"output_dir {output_dir!r} is the folder of the source model: choose another folder.")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise AFTError(f"output_dir {output_dir!r} already holds files: choose a new or empty folder, or pass "
                       "overwrite=True.")
    check_model_weights(source, f"the source model {source!r}")
    offline_if_unreachable(source)
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as error:
        raise AFTError(f"could not load {source!r}: {student_load_failure(source, error)}") from error
    if teacher_modality(config) == "image":  # a ConvNeXt's layer count is its stages: cut, it broke
        raise AFTError(f"{source!r} is an image model ({config.model_type}): image models are not supported, only "
                       "text models' first layers are kept; start from a smaller image model of its kind, or build "
                       "one (transformers' config class with fewer layers or channels) and train that.")
    key = next((k for k in ("num_hidden_layers", "n_layer", "num_layers") if hasattr(config, k)), None)
    if key is None:
        raise AFTError(f"{source!r} ({config.model_type}) has no layer count to truncate (the first layers of a "
                       "transformer encoder or decoder are kept): start from a smaller model of its kind, or build "
                       "one (transformers' config class with fewer layers) and train that.")
    total = getattr(config, key)
    if num_layers > total:
        raise AFTError(f"num_layers must be in 1..{total} for {source!r} (got {num_layers}).")
    processor = AutoProcessor.from_pretrained(source)
    if isinstance(processor, PreTrainedTokenizerBase):  # before anything is written: a folder without its tokenizer
        check_vocabulary(processor, config, f"the source model {source!r}")
    with intended_load_report():  # the dropped layers' weights are left out on purpose
        AutoModel.from_pretrained(source, **{key: num_layers}).save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    share_like_other_files(output_dir)
    return output_dir
