"""How a teacher loads: its config (modality and default pooling, without weights), the dtype and device placement
options for large teachers on accelerators, and a fast stand-in config for local GGUF files.

GGUF teachers load through transformers, which dequantises them (`from_pretrained(SOURCE, gguf_file=FILE)`, which
needs `pip install gguf`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Literal, get_args

import torch
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_IMAGE_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from ..errors import AFTError, one_line, warn_once
from .spec import hub_revision

logger = logging.getLogger(__name__)

TeacherDtype = Literal["float32", "float16", "bfloat16"]
TEACHER_DTYPES = get_args(TeacherDtype)


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextmanager
def intended_load_report():
    """Drop transformers' LOAD REPORT table around a load whose differences are intended (a classification
    checkpoint loaded as a backbone teacher, a new head, a truncated student): it says nothing a user can act on.
    Every other warning of that load still shows."""
    report = logging.getLogger("transformers.modeling_utils")
    drop = _DropLoadReport()
    report.addFilter(drop)
    try:
        yield
    finally:
        report.removeFilter(drop)


def file_options(options: dict) -> dict:
    """The load options that also apply to a teacher's config, tokenizer or image processor."""
    return {key: options[key] for key in ("gguf_file", "trust_remote_code") if key in options}


def load_config(spec: str, name: str, revision: str, options: dict | None = None):
    """The teacher's config (cheap: no weights), which says its modality and default pooling."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, revision=hub_revision(revision), **file_options(options or {}))
    except Exception as error:
        raise AFTError(f"could not load teacher {spec!r}: {one_line(error)}") from error


def gguf_header_config(path: str):
    """A stand-in config for a local GGUF file, read from its header in milliseconds (AutoConfig parses the whole
    vocabulary: ~13 s for SmolLM2's), enough for the modality, default pooling and token limit; None to fall back to
    AutoConfig. GGUF files hold llama.cpp models: decoders, apart from BERT-like and T5 encoders."""
    try:
        from transformers.integrations.gguf.reader import read_gguf_metadata  # not public API: hence the fallback

        metadata = read_gguf_metadata(path)[0]
        architecture = metadata["general.architecture"]
    except Exception:
        return None
    encoder = "bert" in architecture or architecture.startswith("t5")
    # Its context length caps the texts here as the loaded config will (the cap is part of the cache key).
    return SimpleNamespace(model_type=architecture, is_decoder=not encoder,
                           max_position_embeddings=metadata.get(f"{architecture}.context_length"))


def teacher_modality(config) -> str:
    """`image` for vision backbones and image classifiers (ViT, ConvNeXt, ResNet, MobileNet...), else `text`."""
    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "text"
    if model_type in MODEL_FOR_IMAGE_MAPPING_NAMES or model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "image"
    return "text"


def torch_dtype(device: torch.device, dtype: str) -> torch.dtype:
    """The dtype a teacher runs in: as asked on an accelerator, always float32 on CPU (half precision is slow there,
    and the features should not depend on where a CPU run happened)."""
    if dtype not in TEACHER_DTYPES:
        raise AFTError(f"unknown teacher_dtype {dtype!r}: choose one of {', '.join(TEACHER_DTYPES)}.")
    if device.type == "cpu":
        return torch.float32
    return getattr(torch, dtype)


def load_options(device: torch.device, dtype: str = "float32", device_map: str | None = None,
                 gguf_file: str | None = None) -> dict:
    """Keyword arguments for `AutoModel.from_pretrained`. `device_map` (e.g. "auto": spread a teacher too large for one
    device over all visible ones, via accelerate) only applies on an accelerator."""
    options = {"dtype": torch_dtype(device, dtype)}
    if device_map and device.type != "cpu":
        options["device_map"] = device_map
    if gguf_file:
        options["gguf_file"] = gguf_file
    return options


def default_pooling(config) -> str:
    """Text encoders: mean over tokens (what sentence-transformers models are trained for); decoders: the last
    non-padding token (the only one that has seen the whole text)."""
    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "mean"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        return "last"
    return "mean"


# Models whose position ids start after the padding index (RoBERTa's create_position_ids_from_input_ids): a table of
# 514 positions takes 512 tokens.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text",
                     "longformer", "mpnet", "ibert", "luke", "markuplm", "xmod"}
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")  # a config's position table, by its name


def teach_token_limit(model, processor) -> None:
    """Give a tokenizer the limit of its model (`model_max_length`, which many tokenizers leave at 1e30), so that
    every later encoding of texts for that model is cut there (`tokens.encode`), whatever max_length it is asked."""
    limit = token_limit(model.config, processor) if hasattr(processor, "model_max_length") else None
    if limit is not None:
        processor.model_max_length = limit


def token_limit(config, tokenizer=None) -> int | None:
    """The most tokens a model can take: its position table (`max_position_embeddings`, or GPT-2's `n_positions` /
    `n_ctx`, less the padding offset of RoBERTa-like models) and its tokenizer's `model_max_length` when that is a
    real limit (< 1e6); None when neither says (rotary models without a table, GGUF stand-ins)."""
    limits = []
    positions = next((value for key in _POSITION_KEYS if isinstance(value := getattr(config, key, None), int)), None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
            positions -= (getattr(config, "pad_token_id", None) or 1) + 1
        limits.append(positions)
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < 1_000_000:
        limits.append(length)
    return min(limits) if limits else None


def cap_max_length(model: str, max_length: int | None, limit: int | None, flag: str) -> int | None:
    """`max_length`, or the model's `limit` when that is smaller (or no length was asked), said once per model in
    one warning line: texts longer than a model's position table are cut, never a crash."""
    if limit is None or (max_length is not None and max_length <= limit):
        return max_length
    if max_length is not None:
        warn_once(logger, f"hf-aft: {model} takes at most {limit} tokens (its position table or tokenizer limit): "
                          f"texts are cut to {limit} tokens, not {flag} {max_length}.")
    return limit
