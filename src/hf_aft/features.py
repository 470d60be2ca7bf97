"""Teacher features: one forward pass of each frozen teacher over a dataset, once, stored as a `datasets` column.

`extract_teacher_features` adds a float32 column `teacher_features` (the teachers' pooled features concatenated in
the order given). Each teacher's features are a `Dataset.map` whose fingerprint is derived from the dataset's
fingerprint, the column it reads, the teacher id, its resolved revision, the pooling and the max length (plus, only
when they apply, the image modality, the GGUF file and a non-float32 dtype), and whose Arrow file is kept in a cache
folder: a second call with the same inputs loads that file and neither loads nor runs any teacher. Image teachers live
in images.py, GGUF specs and load options in teacher_loading.py.

Under several processes (`accelerate launch`), each process runs each teacher on its contiguous shard of the data;
the main process assembles the shards, in dataset order, into the same cache file one process would have written.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.distributed as dist
from datasets.fingerprint import Hasher
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .distributed import is_distributed
from .errors import AFTError

logger = logging.getLogger(__name__)

FEATURES_COLUMN = "teacher_features"
POOLINGS = ("auto", "mean", "cls", "pooler", "last")
FEATURE_DTYPES = ("float32", "float16")
_FEATURES_VERSION = "2"  # bump when the extraction (or its cached files' layout) changes
_PART_COLUMN = "__hf_aft_teacher"  # a cached teacher's column, whatever its place among the teachers
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
# Features also depend on how inputs are prepared: a text teacher's tokenizer (vocabulary, merges, special tokens,
# lower-casing), an image teacher's processor (resize / crop / normalisation).
_HASHED_CONFIGS = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


@dataclass
class TeacherInfo:
    """Provenance of one teacher's slice of the `teacher_features` column."""

    name: str
    revision: str
    pooling: str
    dim: int
    max_length: int


def parse_teacher(spec: str) -> tuple[str, str | None]:
    """`"org/name@rev"` -> `("org/name", "rev")`; a local folder (which may contain '@') has no revision."""
    if os.path.isdir(spec) or "@" not in spec:
        return spec, None
    name, revision = spec.rsplit("@", 1)
    return name, revision or None


def resolve_revision(name: str, revision: str | None) -> str:
    """A content hash for a local folder; the commit sha for a Hub id (from the Hub, or the Hub cache offline)."""
    if os.path.isdir(name):
        if revision:
            raise AFTError(f"teacher {name!r} is a local folder: it cannot be pinned with @{revision}.")
        return "local-" + _hash_folder(Path(name))
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        return HfApi().model_info(name, revision=revision).sha
    except RevisionNotFoundError:
        raise AFTError(f"teacher {name!r} has no revision {revision!r} on the Hub: pin a branch, tag or commit sha "
                       f"that exists ({name}@main, {name}@v1.0, {name}@<sha>).") from None
    except Exception as hub_error:  # offline, or an unknown id: fall back to the local Hub cache
        try:
            return Path(snapshot_download(name, revision=revision, local_files_only=True)).name
        except Exception:
            where = f"{name}@{revision}" if revision else name
            raise AFTError(f"could not resolve teacher {where!r}: not a local folder, and the Hub said "
                           f"{_first_line(hub_error)}. Check the id and revision, or pass a local folder.") from None


def _hash_folder(folder: Path) -> str:
    """sha256 of the weight, config and tokenizer/processor files: a changed teacher gets new features, an unchanged
    one reuses them."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _HASHED_CONFIGS))
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise AFTError(f"teacher folder {str(folder)!r} holds no weight files (*.safetensors, *.bin, *.gguf, ...).")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def default_pooling(config) -> str:
    """Text encoders: mean over tokens (what sentence-transformers models are trained for); decoders: the last
    non-padding token (the only one that has seen the whole text); anything else with a pooler: its pooler output."""
    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "mean"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        return "last"
    return "mean"


def pool(outputs, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T, H] token states -> [B, H] with `pooling` in mean / cls / pooler / last (padding excluded)."""
    if pooling == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise AFTError("teacher_pooling='pooler' but this teacher has no pooler output: use mean, cls or last.")
        return pooled
    states = outputs.last_hidden_state
    mask = attention_mask.to(states.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1)
    if pooling == "cls":
        return states[:, 0]
    if pooling == "last":  # position of the last real token, whichever side the padding is on
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask * positions).argmax(dim=1)
        return states[torch.arange(states.shape[0], device=states.device), last]
    raise AFTError(f"unknown teacher pooling {pooling!r}: choose mean, cls, pooler or last.")


def load_config(spec: str, name: str, revision: str, options: dict | None = None):
    """The teacher's config (cheap: no weights), which says its modality and default pooling."""
    from transformers import AutoConfig

    hub_revision = None if revision.startswith("local-") else revision
    try:
        return AutoConfig.from_pretrained(name, revision=hub_revision, **_file_options(options or {}))
    except Exception as error:
        raise AFTError(f"could not load teacher {spec!r}: {_first_line(error)}") from None


def _file_options(options: dict) -> dict:
    """The load options that also apply to a teacher's config, tokenizer or image processor."""
    return {key: options[key] for key in ("gguf_file", "trust_remote_code") if key in options}


class _Teacher:
    """A frozen text teacher, loaded on first use only, so that a cache hit never loads it. `options` go to
    `from_pretrained` (dtype, device_map, gguf_file, trust_remote_code: see teacher_loading.py); `column` is the
    column it reads."""

    modality = "text"
    group_by_length = True

    def __init__(self, spec: str, name: str, revision: str, pooling: str, max_length: int, batch_size: int, device,
                 options: dict | None = None, column: str = "text"):
        self.spec, self.name, self.revision = spec, name, revision
        self.pooling, self.max_length, self.batch_size, self.device = pooling, max_length, batch_size, device
        self.options, self.column = dict(options or {}), column
        self.label = name  # what its provenance records: the folder or Hub id, or the GGUF file
        self.model = self.tokenizer = None
        self.forward_passes = 0

    def load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        # A Hub teacher loads at its resolved commit sha, the revision its features are recorded with.
        hub_revision = None if self.revision.startswith("local-") else self.revision
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.name, revision=hub_revision,
                                                           **_file_options(self.options))
            self.model = AutoModel.from_pretrained(self.name, revision=hub_revision, **self.options)
        except Exception as error:
            raise AFTError(f"could not load teacher {self.spec!r}: {_first_line(error)}") from None
        if self.tokenizer.pad_token is None:  # decoder tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.tokenizer.pad_token is None:
            raise AFTError(f"teacher {self.spec!r}: its tokenizer has no pad, eos or unk token to pad batches with.")
        # Pad on the right whatever the tokenizer says: a decoder's real tokens then keep positions 0..n-1 and never
        # see padding (causal attention), so its features don't depend on the batch; `pool` excludes the padding.
        self.tokenizer.padding_side = "right"
        if self.pooling == "auto":
            self.pooling = default_pooling(self.model.config)
        if "device_map" not in self.options:  # with a device map, accelerate has placed the layers already
            self.model.to(self.device)
        self.model.eval().requires_grad_(False)

    def resolved_pooling(self, config=None) -> str:
        if self.pooling == "auto":
            return default_pooling(config if config is not None else
                                   load_config(self.spec, self.name, self.revision, self.options))
        return self.pooling

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.model is None:
            self.load()
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        # Batch texts of similar length together (less padding); results go back in the original order.
        order = np.argsort([len(x) for x in ids], kind="stable") if self.group_by_length else np.arange(len(ids))
        out = None
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            pieces = {"input_ids": [ids[i] for i in chunk], "attention_mask": [masks[i] for i in chunk]}
            batch = self.tokenizer.pad(pieces, return_tensors="pt").to(self.model.device)
            pooled = pool(self.model(**batch), batch["attention_mask"], self.pooling).float().cpu().numpy()
            self.forward_passes += 1
            if out is None:
                out = np.empty((len(order), pooled.shape[1]), dtype=np.float32)
            out[chunk] = pooled
        return out

    def free(self) -> None:
        self.model = self.tokenizer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _teacher_column(texts, teacher: _Teacher, text_column: str, fingerprint: str, cache_dir: Path,
                    map_batch_size: int) -> datasets.Dataset:
    """One teacher's features as a one-column dataset, from its cache file or computed (sharded if distributed).
    `text_column` is whichever column the teacher reads (text or images)."""
    cache_file = cache_dir / f"teacher-{fingerprint}.arrow"

    def run(data, data_fingerprint, path):
        return data.map(
            lambda batch: {_PART_COLUMN: teacher(batch[text_column])},
            batched=True,
            batch_size=map_batch_size,
            remove_columns=[text_column],
            new_fingerprint=data_fingerprint,
            cache_file_name=str(path),
            desc=f"Teacher features ({teacher.name})",
        )

    if is_distributed() and not cache_file.exists():
        rank, world = dist.get_rank(), dist.get_world_size()
        shard_files = [cache_dir / f"teacher-{fingerprint}-shard{i}of{world}.arrow" for i in range(world)]
        shard = texts.shard(num_shards=world, index=rank, contiguous=True)
        run(shard, Hasher.hash([fingerprint, rank, world]), shard_files[rank])
        dist.barrier()
        if rank == 0:  # contiguous shards, concatenated in rank order: dataset order
            shards = datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in shard_files])
            shards.map(batched=True, batch_size=map_batch_size, new_fingerprint=fingerprint,
                       cache_file_name=str(cache_file), desc="Assembling shards")
            for path in shard_files:
                path.unlink(missing_ok=True)
        dist.barrier()
    return run(texts, fingerprint, cache_file)  # loads the cache file when it exists


class _main_process_first:
    """Process 0 runs the block first (writing the cache), the others afterwards (reading it)."""

    def __enter__(self):
        if is_distributed() and dist.get_rank() != 0:
            dist.barrier()

    def __exit__(self, *exc):
        if is_distributed() and dist.get_rank() == 0:
            dist.barrier()


def _default_device() -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0)


def default_cache_dir() -> Path:
    return Path(datasets.config.HF_DATASETS_CACHE) / "hf_aft_features"


def extract_teacher_features(
    dataset: datasets.Dataset,
    teachers: list[str] | str,
    text_column: str = "text",
    pooling: str = "auto",
    batch_size: int = 32,
    max_length: int = 256,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    map_batch_size: int = 1024,
    feature_dtype: str = "float32",
    trust_remote_code: bool = False,
    image_column: str | None = None,
    dtype: str = "float32",
    device_map: str | None = None,
    group_by_length: bool = True,
) -> datasets.Dataset:
    """Add the column `teacher_features`: each teacher's pooled features, concatenated in the order given.

    Args:
        dataset: the (raw or tokenized) dataset; it must hold the column each teacher reads: `text_column` for text
            teachers, `image_column` for image teachers.
        teachers: Hub ids or local folders, each optionally `id@revision`; GGUF files as `path/model.gguf` or
            `SOURCE::FILE.gguf` (see teacher_loading.py).
        pooling: `auto` (per architecture: see `default_pooling`, and images.py for image teachers), `mean`, `cls`,
            `pooler` or `last`.
        batch_size: teacher forward batch; within each block of `map_batch_size` rows, texts of similar length
            are batched together.
        max_length: teachers truncate to this many tokens.
        device: where the teachers run; by default CUDA when available, else CPU.
        cache_dir: where the features' Arrow files are kept; by default `HF_DATASETS_CACHE/hf_aft_features`.
        feature_dtype: `float32`, or `float16` to store the joined column in half the space (each teacher's own
            cache stays float32, so switching back costs no teacher pass).
        trust_remote_code: let teachers run modelling code from their repo; off unless you trust them.
        image_column: the column image teachers read (PIL images, arrays or file paths), each through its own
            `AutoImageProcessor`.
        dtype: `float32`, `float16` or `bfloat16`: the teachers' dtype on an accelerator (CPU always uses float32).
        device_map: e.g. `"auto"` to spread a teacher too large for one accelerator over all visible ones.
        group_by_length: batch texts of similar length together within each block (less padding; results keep the
            dataset's order). False runs them in dataset order (for comparison: the features are the same).

    Returns:
        The dataset with the new column. Per-teacher provenance (`TeacherInfo`: id, resolved revision, pooling,
        width) is stored in the dataset's info and read back by `read_teacher_infos(dataset)`.
    """
    teachers = [teachers] if isinstance(teachers, str) else list(teachers or [])
    if not teachers:
        raise AFTError("no teachers given: pass at least one Hub id or local folder.")
    if pooling not in POOLINGS:
        raise AFTError(f"unknown teacher pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")
    if len(dataset) == 0:
        raise AFTError("the dataset is empty: there is nothing to compute teacher features for.")
    if feature_dtype not in FEATURE_DTYPES:
        raise AFTError(f"unknown feature_dtype {feature_dtype!r}: choose one of {', '.join(FEATURE_DTYPES)}.")
    from .teacher_loading import load_options

    if text_column not in dataset.column_names and image_column is None:
        raise AFTError(f"text column {text_column!r} not found; the dataset has columns {dataset.column_names}. "
                       "Pass text_column=... (--text_column), or image_column=... (--image_column) for images.")
    if image_column is not None:
        from .images import check_image_column

        check_image_column(dataset, image_column)
    if FEATURES_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(FEATURES_COLUMN)
    device = torch.device(device) if device is not None else _default_device()
    if device_map and is_distributed():
        raise AFTError("teacher_device_map spreads one teacher over all devices: use it in a single process, not "
                       "under accelerate launch (or extract the features first, then launch the training).")
    options = {**load_options(device, dtype, device_map), "trust_remote_code": trust_remote_code}
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)

    parts, infos = [], []
    for index, spec in enumerate(teachers):
        teacher, input_column, extra_key = _make_teacher(dataset, spec, pooling, max_length, batch_size, device,
                                                         options, text_column, image_column)
        teacher.group_by_length = group_by_length
        fingerprint = Hasher.hash([_FEATURES_VERSION, dataset._fingerprint, input_column, teacher.name,
                                   teacher.revision, teacher.pooling, teacher.max_length, *extra_key])
        fingerprinted_auto = teacher.pooling == "auto"
        # The cached part's column has one name whatever the teacher's place in the list, so that a teacher cached
        # alone or in another order is reused; the renaming below costs nothing (no data is written).
        column = f"__hf_aft_teacher_{index}"
        inputs = dataset.select_columns([input_column])
        part = _teacher_column(inputs, teacher, input_column, fingerprint, cache_dir, map_batch_size)
        part = part.rename_column(_PART_COLUMN, column)
        if teacher.forward_passes == 0:
            logger.info("teacher %s: features loaded from cache", teacher.name)
        resolved = teacher.pooling
        if resolved == "auto" or fingerprinted_auto:
            resolved = _resolved_pooling_record(cache_dir / f"teacher-{fingerprint}.json", teacher)
        teacher.free()
        parts.append(part)
        infos.append(TeacherInfo(teacher.label, teacher.revision, resolved, len(part[0][column]), teacher.max_length))

    # Join the teachers' columns into one fixed-width column; only the features are written, the dataset's
    # own columns are referenced, not copied.
    columns = [f"__hf_aft_teacher_{i}" for i in range(len(parts))]
    width = sum(info.dim for info in infos)
    fingerprint = Hasher.hash([_FEATURES_VERSION, [part._fingerprint for part in parts], feature_dtype])
    with _main_process_first():
        joined = datasets.concatenate_datasets(parts, axis=1).map(
            lambda batch: {FEATURES_COLUMN: np.concatenate([np.asarray(batch[c], feature_dtype) for c in columns], 1)},
            batched=True,
            batch_size=map_batch_size,
            remove_columns=columns,
            features=datasets.Features({FEATURES_COLUMN: datasets.List(datasets.Value(feature_dtype), length=width)}),
            new_fingerprint=fingerprint,
            cache_file_name=str(cache_dir / f"joined-{fingerprint}.arrow"),
            desc="Concatenating teacher features",
        )
    result = datasets.concatenate_datasets([dataset, joined], axis=1)
    result.info.description = json.dumps({"hf_aft_teachers": [asdict(info) for info in infos]})
    return result


def _make_teacher(dataset, spec, pooling, max_length, batch_size, device, options, text_column, image_column):
    """The teacher for `spec` (text or image, from its config), the column it reads, and what beyond the text
    defaults must enter its cache fingerprint. A teacher whose modality doesn't match its column is refused."""
    from .teacher_loading import (
        gguf_file_revision,
        gguf_header_config,
        split_gguf,
        teacher_label,
        teacher_modality,
    )

    source, gguf_file = split_gguf(spec)
    name, pinned = parse_teacher(source)
    if gguf_file and os.path.isdir(name):
        if pinned:
            raise AFTError(f"teacher {spec!r} is a local GGUF file: it cannot be pinned with @{pinned}.")
        revision = gguf_file_revision(name, gguf_file)
    else:
        revision = resolve_revision(name, pinned)
    local_gguf = os.path.join(name, gguf_file) if gguf_file and os.path.isdir(name) else None
    options = {**options, **({"gguf_file": gguf_file} if gguf_file else {})}
    config = (local_gguf and gguf_header_config(local_gguf)) or load_config(spec, name, revision, options)
    modality = teacher_modality(config)
    extra_key = [f"gguf:{gguf_file}"] if gguf_file else []
    if options["dtype"] != torch.float32:
        extra_key.append(str(options["dtype"]))
    if modality == "image":
        from .images import ImageTeacher

        if image_column is None:
            raise AFTError(f"teacher {spec!r} is an image model ({config.model_type}): it cannot read the text column "
                           f"{text_column!r}; pass image_column=... (--image_column) or choose a text teacher.")
        teacher = ImageTeacher(spec, name, revision, pooling, 0, batch_size, device, options, image_column)
        teacher.pooling = teacher.resolved_pooling(config)
        return teacher, image_column, ["image", *extra_key]
    text_feature = dataset.features.get(text_column)
    if text_feature is None:
        raise AFTError(f"teacher {spec!r} is a text model ({config.model_type}) but the dataset has no text column "
                       f"{text_column!r} (columns {dataset.column_names}): choose an image teacher for images, or "
                       "pass text_column=... (--text_column).")
    if not (isinstance(text_feature, datasets.Value) and text_feature.dtype in ("string", "large_string")):
        raise AFTError(f"teacher {spec!r} is a text model ({config.model_type}) but column {text_column!r} holds "
                       f"{text_feature}, not text: choose an image teacher for images, or another --text_column.")
    teacher = _Teacher(spec, name, revision, pooling, max_length, batch_size, device, options, text_column)
    teacher.pooling = teacher.resolved_pooling(config)
    teacher.label = teacher_label(spec)
    return teacher, text_column, extra_key


def _resolved_pooling_record(path: Path, teacher: _Teacher) -> str:
    """The pooling a teacher actually used. An image teacher's `auto` is decided from its outputs, so whoever ran it
    records the decision beside the cache file, and a cache hit reads it back."""
    if teacher.pooling != "auto":
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"pooling": teacher.pooling}))
            tmp.replace(path)
        return teacher.pooling
    try:
        return json.loads(path.read_text())["pooling"]
    except (OSError, ValueError, KeyError):
        return "auto"


def read_teacher_infos(dataset: datasets.Dataset) -> list[TeacherInfo] | None:
    """The per-teacher provenance stored by `extract_teacher_features`, or None if the dataset carries none."""
    try:
        stored = json.loads(dataset.info.description or "")["hf_aft_teachers"]
    except (ValueError, KeyError, TypeError):
        return None
    return [TeacherInfo(**info) for info in stored]
