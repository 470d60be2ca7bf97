"""Where a teacher comes from and how it loads: GGUF files, the teacher's modality (text or image), and the dtype /
device placement options for large teachers on accelerators.

A GGUF teacher is named either by the path of its `.gguf` file (`path/to/model.gguf`) or as `SOURCE::FILE.gguf`, where
SOURCE is a local folder or a Hub id (optionally `id@revision`) holding that file. transformers dequantises it on load
(`from_pretrained(SOURCE, gguf_file=FILE)`, which needs `pip install gguf`). A local GGUF file's revision is the sha256
of that one file, so a changed file gets new features and an unchanged one reuses the cache.
"""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import torch
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_IMAGE_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from .errors import AFTError

TEACHER_DTYPES = ("float32", "float16", "bfloat16")
GGUF_SEPARATOR = "::"


def split_gguf(spec: str) -> tuple[str, str | None]:
    """`"dir::m.gguf"` -> `("dir", "m.gguf")`; `"path/m.gguf"` -> `("/abs/path", "m.gguf")`; else `(spec, None)`."""
    if GGUF_SEPARATOR in spec:
        source, gguf_file = spec.split(GGUF_SEPARATOR, 1)
        if not source or not gguf_file.endswith(".gguf"):
            raise AFTError(f"teacher {spec!r}: write a GGUF teacher as SOURCE::FILE.gguf (a folder or Hub id, then "
                           "the file's name in it) or as the path of the .gguf file.")
        return source, gguf_file
    if spec.endswith(".gguf"):
        if not os.path.isfile(spec):
            raise AFTError(f"teacher {spec!r}: no such GGUF file. For a file on the Hub write HUB_ID::FILE.gguf.")
        folder, gguf_file = os.path.split(os.path.abspath(spec))
        return folder, gguf_file
    return spec, None


def teacher_label(spec: str) -> str:
    """The name a teacher's provenance records: its folder or Hub id (without @revision), or its GGUF file."""
    from .features import parse_teacher

    source, gguf_file = split_gguf(spec)
    name = parse_teacher(source)[0]
    if gguf_file is None:
        return name
    return os.path.join(name, gguf_file) if os.path.isdir(name) else f"{name}{GGUF_SEPARATOR}{gguf_file}"


def gguf_file_revision(folder: str, gguf_file: str) -> str:
    """sha256 of the one GGUF file (a folder may hold several quantisations: only the one used counts)."""
    path = os.path.join(folder, gguf_file)
    if not os.path.isfile(path):
        raise AFTError(f"GGUF file {gguf_file!r} not found in {folder!r}: check the name after '::'.")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return "gguf-" + digest.hexdigest()[:16]


def gguf_header_config(path: str):
    """A stand-in config for a local GGUF file, read from its header in milliseconds (AutoConfig parses the whole
    vocabulary: ~13 s for SmolLM2's), enough for the modality and default pooling; None to fall back to AutoConfig.
    GGUF files hold llama.cpp models: decoders, apart from BERT-like and T5 encoders."""
    try:
        from transformers.integrations.gguf.reader import read_gguf_metadata  # not public API: hence the fallback

        architecture = read_gguf_metadata(path)[0]["general.architecture"]
    except Exception:
        return None
    encoder = "bert" in architecture or architecture.startswith("t5")
    return SimpleNamespace(model_type=architecture, is_decoder=not encoder)


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
