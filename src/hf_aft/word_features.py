"""Teacher features per word, for token classification: each teacher reads the words column (a list of strings per
row) with its own tokenizer (`is_split_into_words=True`), and the states of each word's sub-tokens are averaged
(`word_ids()`), so teachers and student with different tokenizers meet word by word. Row i of the column is
[n_words_i, sum of the teachers' widths]; a word that a teacher did not see (cut by its --teacher_max_length, or
tokenized to nothing) is a row of NaN, which the batches turn into a mask (word_batches.py): only words every teacher
and the student saw enter the kernel.

Why the mean of a word's sub-tokens: it uses all of the teacher's states for the word whatever its tokenizer makes
of it (the first sub-token of a word split by BPE is often a fragment such as "Ġ"). The student's side is its first
sub-token's feature instead: the position its head classifies (words.py).

Each teacher's features are cached as the sentence features are (cache.py: a `Dataset.map` with an explicit
fingerprint, verified files, resumable blocks), under a fingerprint that adds the word pooling to the dataset's
fingerprint, the column, the teacher's id, resolved revision and max length; joined into one column like
`features._join`, with float16 storage allowed. `with_word_or_teacher_features` is the path `hf-aft train` and
`AFTTrainer` take (sentence features otherwise); `check_run_options` checks a run's options for its problem type.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets.fingerprint import Hasher

from .cache import (
    PART_COLUMN,
    cached_teacher_column,
    main_process_first,
    prepared_cache_dir,
    verified_map,
)
from .columns import arrow_column
from .distributed import default_device
from .errors import AFTError
from .feature_inputs import FEATURE_DTYPES
from .features import (
    FEATURES_COLUMN,
    FEATURES_VERSION,
    TeacherInfo,
    extraction_kwargs,
    with_teacher_features,
)
from .targets import TOKEN
from .task_options import check_task_options
from .teachers import MAP_BATCH_SIZE, TextTeacher, load_options, make_teacher
from .tokens import fill_empty
from .words import check_fast_tokenizer, is_words_dataset, split_words

logger = logging.getLogger(__name__)

WORD_POOLING = "word-mean"  # what the provenance records: the mean of each word's sub-tokens


class WordTeacher(TextTeacher):
    """A text teacher (`teachers.TextTeacher`: loaded on first use, so a cache hit never loads it) that returns one
    vector per word: called with a batch of word lists, it returns per row a float32 [n_words, width] array."""

    @classmethod
    def of(cls, teacher: TextTeacher) -> WordTeacher:
        word = cls.__new__(cls)
        word.__dict__.update(vars(teacher))
        return word

    def load(self) -> None:
        super().load()
        check_fast_tokenizer(self.tokenizer, f"teacher {self.spec!r}")

    @torch.inference_mode()
    def __call__(self, words: list[list[str]], rows: list[int] | None = None) -> list[np.ndarray]:
        if self.model is None:
            self.load()
        encoded, word_ids = split_words(self.tokenizer, words, self.max_length)
        encoded = fill_empty(encoded, self.tokenizer)  # words that make no token: one stand-in token, no word
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        order = np.argsort([len(x) for x in ids], kind="stable") if self.group_by_length else np.arange(len(ids))
        out: list[np.ndarray | None] = [None] * len(ids)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            pieces = {"input_ids": [ids[i] for i in chunk], "attention_mask": [masks[i] for i in chunk]}
            batch = self.tokenizer.pad(pieces, return_tensors="pt").to(self.model.device)
            states = self.model(**batch).last_hidden_state.float()
            self.forward_passes += 1
            pooled = word_means(states, [word_ids[i] for i in chunk], [len(words[i]) for i in chunk],
                                self.tokenizer.padding_side)
            for i, features in zip(chunk, pooled, strict=True):
                out[i] = features
        return out


def word_means(states: torch.Tensor, word_ids: list[list[int | None]], n_words: list[int],
               padding_side: str = "right") -> list[np.ndarray]:
    """Per row of `states` [B, T, H] (a padded batch), the mean of each word's sub-token states: [n_words, H] float32,
    NaN for a word with no sub-token in the row (truncated away, or tokenized to nothing)."""
    batch, width, hidden = states.shape
    widest = max(n_words)
    index = torch.full((batch, width), -1, dtype=torch.long)
    for row, ids in enumerate(word_ids):
        offset = width - len(ids) if padding_side == "left" else 0
        index[row, offset : offset + len(ids)] = torch.tensor([-1 if w is None else w for w in ids], dtype=torch.long)
    index = index.to(states.device)
    valid = index >= 0
    slots = (torch.arange(batch, device=states.device)[:, None] * widest + index)[valid]
    sums = states.new_zeros(batch * widest, hidden).index_add_(0, slots, states[valid])
    counts = states.new_zeros(batch * widest).index_add_(0, slots, states.new_ones(slots.shape[0]))
    means = (sums / counts[:, None]).reshape(batch, widest, hidden)  # 0 / 0: NaN, a word not seen
    means = means.cpu().numpy()
    return [means[row, : n_words[row]] for row in range(batch)]


def _word_part(dataset, teacher: WordTeacher, column: str, extra_key: list, cache_dir: Path, map_batch_size: int):
    """One teacher's per-word features (cached as `features` caches sentence features) and its provenance."""
    fingerprint = Hasher.hash([FEATURES_VERSION, dataset._fingerprint, column, teacher.name, teacher.revision,
                               WORD_POOLING, teacher.max_length, *extra_key])
    part = cached_teacher_column(dataset.select_columns([column]), teacher, column, fingerprint, cache_dir,
                                 map_batch_size, desc=f"Teacher word features ({teacher.name})")
    teacher.free()
    dim = len(part[0][PART_COLUMN][0])
    return part, TeacherInfo(teacher.label, teacher.revision, WORD_POOLING, dim, teacher.max_length, teacher.backend)


def extract_word_features(dataset: datasets.Dataset, teachers: list[str], words_column: str = "tokens",
                          batch_size: int = 32, max_length: int = 256, device=None, cache_dir=None,
                          map_batch_size: int | None = None, feature_dtype: str = "float32",
                          trust_remote_code: bool = False, dtype: str = "float32", **unused) -> datasets.Dataset:
    """Add the column `teacher_features`: per row a [n_words, sum of widths] list of each teacher's per-word
    features (see the module docstring), concatenated in the order given; provenance as `extract_teacher_features`
    stores it (pooling `word-mean`).

    Raises:
        AFTError: no teachers, an image teacher, a teacher whose tokenizer is not fast, one that cannot be loaded.
    """
    if not teachers:
        raise AFTError("no teachers given: pass at least one Hub id or local folder.")
    if feature_dtype not in FEATURE_DTYPES:
        raise AFTError(f"unknown feature_dtype {feature_dtype!r}: choose one of {', '.join(FEATURE_DTYPES)}.")
    device = torch.device(device) if device is not None else default_device()
    options = {**load_options(device, dtype, None), "trust_remote_code": trust_remote_code}
    cache_dir = prepared_cache_dir(cache_dir)
    parts, infos, cached = [], [], []
    for index, spec in enumerate(teachers):
        teacher, column, extra_key = make_teacher(dataset, str(spec), "mean", max_length, batch_size, device, options,
                                                  words_column, words=True)
        if not isinstance(teacher, TextTeacher):
            raise AFTError(f"teacher {spec!r} is not a text model: token classification needs text teachers.")
        word_teacher = WordTeacher.of(teacher)
        part, info = _word_part(dataset, word_teacher, column, extra_key, cache_dir,
                                map_batch_size or word_teacher.map_batch_size)
        parts.append(part.rename_column(PART_COLUMN, f"__hf_aft_teacher_{index}"))
        infos.append(info)
        cached.append(word_teacher.forward_passes == 0)
    joined = _join_words(dataset, parts, infos, feature_dtype, cache_dir, map_batch_size or MAP_BATCH_SIZE)
    joined.info.description = json.dumps({"hf_aft_teachers": [asdict(i) for i in infos], "hf_aft_from_cache": cached})
    return joined


def _join_words(dataset, parts, infos, feature_dtype: str, cache_dir: Path, map_batch_size: int):
    """The teachers' per-word columns side by side, row by row: [n_words, sum of widths] in `feature_dtype`."""
    columns = [f"__hf_aft_teacher_{i}" for i in range(len(parts))]
    width = sum(info.dim for info in infos)
    fingerprint = Hasher.hash([FEATURES_VERSION, "words", [part._fingerprint for part in parts], feature_dtype])
    path = cache_dir / f"joined-{fingerprint}.arrow"
    limit = np.finfo(feature_dtype).max

    def join(batch):
        rows = [np.concatenate([np.asarray(batch[c][r], np.float32).reshape(-1, info.dim)
                                for c, info in zip(columns, infos, strict=True)], 1)
                for r in range(len(batch[columns[0]]))]
        peak = max((float(np.nanmax(np.abs(row), initial=0)) for row in rows), default=0.0)
        if peak > limit:
            raise AFTError(f"the teachers' word features reach {peak:.3g}, beyond {feature_dtype}'s range: keep "
                           "--teacher_feature_dtype float32 (the default).")
        return {FEATURES_COLUMN: [row.astype(feature_dtype) for row in rows]}

    with main_process_first():
        joined = verified_map(path, lambda target: datasets.concatenate_datasets(parts, axis=1).map(
            join, batched=True, batch_size=map_batch_size, remove_columns=columns, new_fingerprint=fingerprint,
            features=datasets.Features({FEATURES_COLUMN: datasets.List(datasets.List(datasets.Value(feature_dtype),
                                                                                     length=width))}),
            cache_file_name=str(target), desc="Concatenating teacher word features"))
    return datasets.concatenate_datasets([dataset, joined], axis=1)


def is_word_features(dataset) -> bool:
    """Whether a dataset's `teacher_features` column holds a list of word vectors per row."""
    feature = getattr(dataset, "features", {}).get(FEATURES_COLUMN) if dataset is not None else None
    return isinstance(getattr(feature, "feature", None), (datasets.List, datasets.Sequence))


def with_word_or_teacher_features(dataset, options, text_column: str = "text", image_column: str | None = None,
                                  teachers: list[str] | None = None, device=None,
                                  name: str = "training dataset") -> datasets.Dataset:
    """`features.with_teacher_features`, except for a words column without features yet (token classification):
    per-word features, extracted with the same teacher options."""
    teachers = options.teachers if teachers is None else teachers
    if (not is_words_dataset(dataset, text_column) or FEATURES_COLUMN in dataset.column_names or not teachers
            or image_column is not None):
        return with_teacher_features(dataset, options, text_column, image_column, teachers, device, name)
    if options.teacher_backend != "torch" or options.teacher_device_map:
        raise AFTError("token classification runs its teachers with the torch backend on one device: drop "
                       "--teacher_backend and --teacher_device_map.")
    if options.teacher_pooling not in ("auto", "mean"):
        raise AFTError(f"token classification averages each word's sub-tokens (word-mean); --teacher_pooling "
                       f"{options.teacher_pooling} does not apply: drop it.")
    return extract_word_features(dataset, teachers, text_column, device=device, **extraction_kwargs(options))


def _word_rows(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """A block of the per-word column as [words, width] float32 (NaN kept)."""
    words = pa.concat_arrays(column.chunks).flatten() if column.num_chunks else pa.array([], pa.list_(pa.float32()))
    lengths = pc.list_value_length(words)
    if len(words) and (pc.min(lengths).as_py() != width or pc.max(lengths).as_py() != width):
        raise AFTError(f"the {FEATURES_COLUMN!r} column's word rows are not {width} wide (the teachers' widths "
                       "summed): recompute the features for these teachers.")
    return words.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)


def scan_word_features(dataset: datasets.Dataset, infos: list[TeacherInfo]) -> list[float]:
    """Check the per-word column before training, as `features.scan_teacher_features` checks sentence features (in
    blocks, never loaded whole): every word row has the teachers' width; no inf; NaN only as a whole teacher's slice
    of a word (a word it did not see); some word seen by every teacher. Returns each teacher's RMS centred norm over
    the words it saw (for `balance_teachers`)."""
    width, bounds = sum(info.dim for info in infos), np.cumsum([0] + [info.dim for info in infos])
    table = dataset.select_columns([FEATURES_COLUMN]).with_format("arrow")
    count, total, total_sq, any_seen = np.zeros(len(infos)), np.zeros(width), np.zeros(width), False
    for start in range(0, len(table), 1024):
        values = _word_rows(table[start : start + 1024][FEATURES_COLUMN], width)
        if np.isinf(values).any():
            raise AFTError(f"the {FEATURES_COLUMN!r} column holds inf (rows {start}..{start + 1023}): recompute the "
                           "features in float32.")
        seen_by_all = np.ones(len(values), bool)
        for t, (info, lo, hi) in enumerate(zip(infos, bounds[:-1], bounds[1:], strict=True)):
            nan = np.isnan(values[:, lo:hi])
            if (nan.any(1) & ~nan.all(1)).any():
                raise AFTError(f"teacher {info.name!r}'s word features hold NaN inside a word (rows {start}.."
                               f"{start + 1023}): recompute them in float32.")
            seen = values[~nan[:, 0], lo:hi]
            seen_by_all &= ~nan[:, 0]
            count[t] += len(seen)
            total[lo:hi] += seen.sum(0, dtype=np.float64)
            total_sq[lo:hi] += np.square(seen).sum(0, dtype=np.float64)
        any_seen |= bool(seen_by_all.any())
    if not any_seen:
        raise AFTError("no word was seen by every teacher (all cut by --teacher_max_length?): raise it.")
    counts = np.repeat(np.maximum(count, 1), [info.dim for info in infos])
    variance = np.maximum(total_sq / counts - (total / counts) ** 2, 0.0)
    return [float(np.sqrt(variance[lo:hi].sum())) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def word_matrix(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The per-word column as one float32 [all words, width] array (NaN rows: words a teacher did not see) and the
    number of words of each row (for the cost report's per-word probe)."""
    column = arrow_column(dataset, FEATURES_COLUMN)
    counts = np.asarray(pc.list_value_length(column), dtype=np.int64)
    words = pa.concat_arrays(column.chunks).flatten()
    width = pc.list_value_length(words[:1])[0].as_py() if len(words) else 0
    return _word_rows(column, width), counts


def check_run_options(script_args, config, labels) -> None:
    """Before any teacher runs (`hf-aft train`): `task_options.check_task_options`, and for token classification: the
    words column becomes `--text_column` (teachers and student read it), the student's tokenizer is a fast one, and
    the best model is kept by entity F1 unless another metric was named (`eval_loss` for the loss).

    Raises:
        AFTError: an option this problem type cannot use, a slow student tokenizer.
    """
    check_task_options(script_args, config, labels.problem_type)
    if labels.problem_type != TOKEN:
        return
    script_args.text_column, script_args.problem_type = labels.words_column, TOKEN  # both pinned in recipe.yaml
    if importlib.util.find_spec("seqeval") is None:  # a dependency of hf-aft; an older environment may lack it
        raise AFTError("token classification scores entities with seqeval, which is not installed: pip install "
                       "seqeval (or reinstall hf-aft).")
    if script_args.image_column is not None:
        raise AFTError("token classification reads a words column: drop --image_column.")
    if config.load_best_model_at_end and config.metric_for_best_model == "loss":  # transformers' default, not ours
        config.metric_for_best_model, config.greater_is_better = "f1", True
        print("token classification: the best student is kept by eval f1 (entity F1); --metric_for_best_model "
              "eval_loss keeps the lowest loss instead", flush=True)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(script_args.model_name_or_path)
    except Exception:  # a student that cannot load is named by load_student, with its reason
        return
    check_fast_tokenizer(tokenizer, f"the student {script_args.model_name_or_path!r}")
