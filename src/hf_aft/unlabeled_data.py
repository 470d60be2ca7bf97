"""Unlabelled rows as a run reads them (`--unlabeled_dataset`, `AFTTrainer(unlabeled_dataset=...)`): loaded like
labelled data, checked like it (a column of the right kind, no blank text), and compared with every held-out split
and the labelled rows, so that no evaluation row reaches the student through the teachers (leakage). Mixing them into
batches is unlabeled.py's."""

from __future__ import annotations

import logging
import os

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .data import arrow_column, check_all_text, check_inputs, first_row, load_dataset_dict
from .data_files import CSV_MISSING, check_utf8, missing_split
from .errors import AFTError, warn_once
from .image_folders import UNLABELLED_SPLIT_NAMES
from .images import check_image_paths, image_digests, looks_like_image_path
from .text_forms import is_blank, normalised_text
from .words import check_blank_words, is_word_lists

LABEL_COLUMNS = ("labels", "label")


def check_unlabeled(unlabeled: datasets.Dataset, input_column: str, name: str = "unlabelled") -> None:
    """The unlabelled split holds rows and an input column of the right kind (text in every row; no missing image)."""
    if len(unlabeled) == 0:
        raise AFTError(f"the {name} split is empty: give unlabelled rows, or drop --unlabeled_dataset.")
    if input_column not in unlabeled.column_names:
        images = "".join(f" (images in {c!r})" for c, f in unlabeled.features.items() if _kind(f) == "image")
        raise AFTError(f"column {input_column!r} not found in the {name} split; it has columns "
                       f"{unlabeled.column_names}{images}. Give unlabelled rows of the labelled data's kind in its "
                       "input column (or rename theirs).")
    if _kind(unlabeled.features[input_column]) == "text":  # UTF-8, then missing (null) texts counted with blank ones
        _check_blank_texts(unlabeled, input_column, name)
    else:
        check_inputs(unlabeled, input_column, name)
    if is_word_lists(unlabeled.features[input_column]):  # token classification: each row a sentence of words
        empty = pc.equal(pc.list_value_length(arrow_column(unlabeled, input_column)), 0)
        row = first_row(empty)
        if row is not None:
            raise AFTError(f"the {name} split's row {row} has no words in {input_column!r}: drop that row.")
        check_blank_words(unlabeled, input_column, name)


def _check_blank_texts(unlabeled: datasets.Dataset, input_column: str, name: str) -> None:
    """A blank text (once zero-width, combining and control characters are dropped) or a missing one (null) carries
    nothing for a teacher: the first such row is named, and how many there are, so one fix clears them all."""
    if input_column not in unlabeled.column_names or _kind(unlabeled.features[input_column]) != "text":
        return
    check_utf8(values := arrow_column(unlabeled, input_column), input_column, name)  # before any text is decoded
    texts = values.to_pylist()
    rows = [i for i, text in enumerate(texts) if is_blank(text)]
    if rows:
        count = "that row" if len(rows) == 1 else f"those {len(rows)} rows (empty, blank or missing texts)"
        csv = f" ({CSV_MISSING})" if any(texts[i] is None for i in rows) else ""
        raise AFTError(f"the {name} split's row {rows[0]} has an empty text in {input_column!r}: drop {count}{csv}.")


def _kind(feature) -> str:
    if is_word_lists(feature):
        return "words"
    if isinstance(getattr(feature, "feature", None), datasets.Value):  # token ids (a tokenized set without its text)
        return "ids"
    if isinstance(feature, datasets.Value):
        return "text" if feature.dtype in ("string", "large_string") else f"{feature.dtype} values"
    if isinstance(feature, (datasets.Image, datasets.Array2D, datasets.Array3D)) or _is_pixel_grid(feature):
        return "image"
    if isinstance(feature, datasets.List):
        inner = feature.feature
        return "lists of records" if isinstance(inner, dict) else "lists of lists" if isinstance(
            inner, datasets.List) else f"lists of {getattr(inner, 'dtype', type(inner).__name__)} values"
    return f"values datasets reads as {type(feature).__name__}"  # e.g. Json: texts mixed with numbers


def _is_pixel_grid(feature) -> bool:
    """Nested lists of numbers, two deep or more (rows of pixels, as JSON or a pandas array gives an image)."""
    depth = 0
    while isinstance(feature, datasets.List):
        feature, depth = feature.feature, depth + 1
    return depth >= 2 and isinstance(feature, datasets.Value) and feature.dtype not in ("string", "large_string")


def _comparable(dataset: datasets.Dataset, column: str, split: str | None = None):
    """The column's rows as strings to compare across splits: normalised texts (words joined by spaces first),
    token ids joined by spaces, images' SHA-256 (an unreadable one named with its row and `split`)."""
    kind = _kind(dataset.features[column])
    if kind == "image":
        return pa.array(image_digests(dataset, column, split), pa.string())
    values = arrow_column(dataset, column)
    if kind == "ids":
        return pc.binary_join(values.cast(pa.list_(pa.string())), " ")
    values = pc.binary_join(values, " ") if kind == "words" else values
    return pa.array([normalised_text(text) for text in values.to_pylist()], pa.string())


def comparable_rows(dataset: datasets.Dataset, other: datasets.Dataset, column: str, split: str | None = None):
    """`dataset`'s rows as they compare with `other`'s (`_comparable`, naming `split`; image paths read as images)."""
    return _comparable(_paths_read(dataset, other, column, split), column, split)


def _paths_read(dataset: datasets.Dataset, other: datasets.Dataset, column: str, split: str | None = None):
    """`dataset`, its column of image file paths read as images when `other` holds images (AFTTrainer takes a pool
    or eval set of paths as it is): paths compare with images by pixels, not as strings."""
    feature = dataset.features[column]
    if _kind(other.features[column]) == "image" and isinstance(feature, dict) and set(feature) == {"bytes", "path"}:
        return dataset.cast_column(column, datasets.Image())  # an Image column's undecoded records
    if _kind(other.features[column]) != "image" or _kind(feature) != "text" or not len(dataset) or (
            not all(looks_like_image_path(str(path)) for path in dataset[column])):
        return dataset
    check_image_paths(dataset, column, split)
    return dataset.cast_column(column, datasets.Image())


def _compared_column(unlabeled: datasets.Dataset, other: datasets.Dataset, input_column: str) -> str | None:
    """The input column when both sets have it, else their token ids (a tokenized set without its text), else None."""
    both = [c for c in (input_column, "input_ids") if c in unlabeled.column_names and c in other.column_names]
    return both[0] if both else None


def read_paths_as_images(splits, column: str) -> None:
    """Labelled images given as file paths (a csv) beside a pool, read as datasets `Image`s in every split of
    `splits` (`data.LabelledSplits`), as a pool's paths are (`read_as_images`): the pool's images then join them and
    are compared with them by decoded pixels."""
    for name in ("train", "eval", "validation"):
        split = getattr(splits, name)
        if split is not None and _kind(split.features.get(column)) == "text":
            setattr(splits, name, split.cast_column(column, datasets.Image()))


def read_as_images(unlabeled: datasets.Dataset, labelled: datasets.Dataset, column: str) -> datasets.Dataset:
    """A pool whose column holds image file paths (a csv, say), encoded image bytes or `{"bytes", "path"}` records (a
    parquet file written by pandas) beside labelled images: read as datasets `Image`s, so that the two compare
    (leakage by decoded pixels) and the teachers read them. Other text is left for check_modality to refuse."""
    if column not in unlabeled.column_names or _kind(labelled.features.get(column)) != "image" or not len(unlabeled):
        return unlabeled
    feature = unlabeled.features[column]
    if feature in (datasets.Value("binary"), datasets.Value("large_binary")) or (
            isinstance(feature, dict) and set(feature) == {"bytes", "path"}):
        return unlabeled.cast_column(column, datasets.Image())  # check_unlabeled then opens each image
    inner = feature
    while isinstance(inner, datasets.List):
        inner = inner.feature
    if isinstance(labelled.features[column], datasets.Image) and str(getattr(inner, "dtype", "")).startswith("float"):
        raise AFTError(f"the unlabelled images in {column!r} are arrays of {inner.dtype} beside labelled image files, "
                       "which datasets cannot join: save them as 8-bit images (np.uint8(np.round(x * 255))) or as "
                       "image files.")
    if _kind(feature) != "text" or not looks_like_image_path(str(unlabeled[0][column])):
        return unlabeled
    check_image_paths(unlabeled, column)  # each path a file (check_unlabeled then reads each image once)
    return unlabeled.cast_column(column, datasets.Image())


def check_modality(unlabeled: datasets.Dataset, labelled: datasets.Dataset, input_column: str,
                   name: str = "unlabelled") -> None:
    """The unlabelled input column holds the same kind of data as the labelled one (text, words, or images)."""
    ours, theirs = _kind(unlabeled.features[input_column]), _kind(labelled.features[input_column])
    if ours != theirs and theirs == "text" and ours != "image":  # a number among texts, say
        check_all_text(unlabeled, input_column, name)
    if ours != theirs:
        raise AFTError(f"the {name} split's column {input_column!r} holds {ours} but the labelled data's holds "
                       f"{theirs}: give unlabelled data of the same kind.")


def check_no_leakage(unlabeled: datasets.Dataset, eval_set: datasets.Dataset | None, input_column: str,
                     eval_name: str = "eval", name: str = "unlabelled", advice: str | None = None) -> None:
    """No unlabelled text or image is also an evaluation one: the teachers' features (and probe predictions) of eval
    rows would reach the student and bias the reported result. Images compare by the SHA-256 of their decoded pixels
    (`images.image_digests`), so a copy elsewhere, re-saved or as an array is found; texts after `normalised_text`
    ("GREAT movie " is "great movie"), sentences of words joined by spaces, token ids when a set has no text."""
    column = None if eval_set is None else _compared_column(unlabeled, eval_set, input_column)
    if column is None:
        return
    theirs = comparable_rows(eval_set, unlabeled, column, eval_name)
    shared = pc.is_in(comparable_rows(unlabeled, eval_set, column, name), value_set=theirs.unique(), skip_nulls=True)
    count = pc.sum(shared.cast("int64")).as_py() or 0
    if count:
        row = int(np.flatnonzero(shared.to_numpy(zero_copy_only=False))[0])
        rows, verb = ("1 row", "is") if count == 1 else (f"{count} rows", "are")
        raise AFTError(f"{rows} of the {name} split {verb} also in the {eval_name} split (first at row {row}"
                       f"{_image_file(unlabeled, column, row)}): "
                       + (advice or "that is leakage, the student would learn from the teachers' view of the "
                          "evaluation data. Remove them from the unlabelled data, or evaluate on another split."))


def _image_file(dataset: datasets.Dataset, column: str, row: int) -> str:
    """", FILE" naming the file an image row was read from (an image folder's, a csv's path), else ""."""
    if not isinstance(dataset.features[column], datasets.Image):  # arrays and texts have no file
        return ""
    value = dataset.cast_column(column, datasets.Image(decode=False))[row][column]
    path = value.get("path") if isinstance(value, dict) else None
    return f", {path}" if path else ""


def load_unlabeled(source: str, split: str, input_column: str, label_column: str, labelled: datasets.Dataset,
                   held_out: dict[str, datasets.Dataset | None]) -> datasets.Dataset:
    """The unlabelled rows of `--unlabeled_dataset SOURCE --unlabeled_split SPLIT` (SOURCE as for --dataset_name),
    checked like labelled data, with any label column dropped (it is never read). `held_out` names the splits no
    unlabelled row may come from (the eval split, --beta auto's validation split).

    Raises:
        AFTError: a source that cannot be loaded, a missing split or column, an empty split, a missing text, another
            kind of input than the labelled data's, rows shared with a held-out split or the labelled training rows.
    """
    try:
        data = load_dataset_dict(source)
    except AFTError as error:
        raise AFTError(f"--unlabeled_dataset: {error}") from error
    if split not in data:
        refusal = missing_split(split, list(data), source, "name one of them with --unlabeled_split")
        raise AFTError(f"--unlabeled_dataset {source!r}: {refusal}")
    unused = {other: len(rows) for other, rows in data.items() if other != split}
    if unused and split == "train":  # the default: an image folder with test_*.png files has two splits, say
        warn_once(logging.getLogger(__name__), f"hf-aft: --unlabeled_dataset {source!r} also has {_counts(unused)}: "
                  "only its 'train' split is used (--unlabeled_split, train unless given: name another with it, or "
                  "give the pool a folder of its own).")
    name = f"unlabelled ({source} {split})"
    unlabeled = read_as_images(_input_column_as_labelled(data[split], labelled, input_column, name), labelled,
                               input_column)
    check_unlabeled(unlabeled, input_column, name)
    check_modality(unlabeled, labelled, input_column, name)
    check_pool_leakage(unlabeled, labelled, held_out, input_column, name)
    _warn_repeated_texts(unlabeled, input_column, source)
    dropped = warn_label_columns(unlabeled, input_column, "--dataset_name", label_column)
    return unlabeled.remove_columns(dropped) if dropped else unlabeled


def _input_column_as_labelled(unlabeled, labelled, column: str, name: str) -> datasets.Dataset:
    """Where the pool lacks `column`: its one column of that kind (an image folder's `image`), renamed, with a note."""
    kind = _kind(labelled.features.get(column))
    same_kind = [c for c, feature in unlabeled.features.items() if _kind(feature) == kind and c not in LABEL_COLUMNS]
    if column in unlabeled.column_names or kind not in ("image", "text") or len(same_kind) != 1:
        return unlabeled
    print(f"hf-aft: the {name} split's {kind} column {same_kind[0]!r} is read as {column!r}, the labelled data's.")
    return unlabeled.rename_column(same_kind[0], column)


def warn_label_columns(unlabeled: datasets.Dataset, input_column: str, labelled_go_in: str,
                       label_column: str = "label") -> list[str]:
    """The pool's label columns (`label_column`, `labels`, `label`), with one warning that they are dropped, never
    read: a labelled set given as the pool by mistake trains no task loss (labelled rows go in `labelled_go_in`)."""
    dropped = sorted({c for c in (label_column, *LABEL_COLUMNS) if c in unlabeled.column_names and c != input_column})
    if dropped:
        logging.getLogger(__name__).warning(f"hf-aft: the unlabelled data's {_columns(dropped)} dropped, never "
                                            "read (its rows train the teacher terms only; labelled rows go in "
                                            f"{labelled_go_in}).")
    return dropped


def _warn_repeated_texts(unlabeled: datasets.Dataset, column: str, source: str) -> None:
    """A pool text given more than once weighs that many times in the teacher terms: said, not changed (a pool can
    mean it, as a labelled set can)."""
    if _kind(unlabeled.features.get(column)) != "text":
        return
    repeats = len(unlabeled) - pc.count_distinct(arrow_column(unlabeled, column)).as_py()
    if repeats:
        logging.getLogger(__name__).warning(
            f"hf-aft: --unlabeled_dataset {source!r} repeats texts: {repeats:,} of its {len(unlabeled):,} rows are "
            "copies of another, and each copy weighs as a row of its own (drop them, e.g. pandas drop_duplicates, if "
            "that is not meant).")


def held_out_splits(others: dict[str, datasets.Dataset], script_args) -> dict[str, datasets.Dataset]:
    """The labelled source's splits a run neither trains nor evaluates on (a `test` split beside `--eval_split
    validation`), which no pool row may come from either: the numbers reported later on them would be leaked. Left
    out: unlabelled splits (IMDB's `unsupervised`, `hf-aft features`' `unlabeled`) and the pool's own split."""
    same = _same_source(script_args.unlabeled_dataset, script_args.dataset_name)
    pool = script_args.unlabeled_split if same else None
    return {f"{name!r}": rows for name, rows in others.items()
            if name.lower() not in UNLABELLED_SPLIT_NAMES and name != pool}


def _same_source(one: str | None, other: str | None) -> bool:
    """Whether two --dataset_name values name one source: `d3`, `./d3/` and its absolute path are one folder."""
    if one is None or other is None:
        return False
    if os.path.exists(one) and os.path.exists(other):
        return os.path.realpath(one) == os.path.realpath(other)
    return one == other


def suggest_pool_split(source: str, unread: dict[str, int]) -> None:
    """A labelled source that also holds unlabelled rows (`hf-aft features`' `unlabeled` split, IMDB's `unsupervised`)
    trained without them: one line saying how to use them."""
    for name, rows in unread.items():
        if name.lower() in UNLABELLED_SPLIT_NAMES:
            warn_once(logging.getLogger(__name__), f"hf-aft: {source!r} also holds a split {name!r} of {rows} rows, "
                      f"unlabelled, which this run does not read: add --unlabeled_dataset {source} "
                      f"--unlabeled_split {name} to learn from them too.")


def check_pool_leakage(unlabeled: datasets.Dataset, labelled: datasets.Dataset | None,
                       held_out: dict[str, datasets.Dataset | None], input_column: str,
                       name: str = "unlabelled", command: bool = True) -> None:
    """No unlabelled row is also a row of a held-out split (`held_out`: name -> split) or of the labelled training
    split (`check_no_leakage`); `command`: the advice names hf-aft train's options, else AFTTrainer's arguments."""
    for held_name, held in held_out.items():
        check_no_leakage(unlabeled, held, input_column, held_name, name)
    check_no_leakage(unlabeled, labelled, input_column, "labelled training", name, advice=(
        "their labels are already used (a --beta auto run would hold some out to judge on). Remove them from the "
        "pool (a pool saved beside the data by hf-aft features is --unlabeled_split unlabeled)." if command else
        "their labels are already used. Remove them from unlabeled_dataset (train_dataset holds them)."))


def _columns(names: list[str]) -> str:
    return f"column {names[0]!r} is" if len(names) == 1 else f"columns {', '.join(map(repr, names))} are"


def _counts(splits: dict[str, int]) -> str:
    return ", ".join(f"split {name!r} ({rows} rows)" for name, rows in splits.items())


def check_trainer_pool(unlabeled, labelled, eval_dataset, input_column: str) -> None:
    """`AFTTrainer(unlabeled_dataset=...)`'s pool checked as `hf-aft train` checks its --unlabeled_dataset: no blank
    texts, no rows of the eval set (one, or each of a dict of them) or of the labelled training set; a label column
    is said to be dropped (a warning). A pool that `mark_checked` named (the command checked its rows) is not checked
    again: image files would be hashed twice."""
    if not isinstance(unlabeled, datasets.Dataset) or unlabeled._fingerprint in _CHECKED_POOLS:
        return
    evals = eval_dataset if isinstance(eval_dataset, dict) else {None: eval_dataset}
    held_out = {"eval" if key is None else f"eval ({key})": split for key, split in evals.items()
                if isinstance(split, datasets.Dataset)}
    _check_blank_texts(unlabeled, input_column, "unlabelled (unlabeled_dataset)")
    warn_label_columns(unlabeled, input_column, "train_dataset")  # join_labelled_unlabeled drops them
    check_pool_leakage(unlabeled, labelled if isinstance(labelled, datasets.Dataset) else None, held_out,
                       input_column, "unlabelled (unlabeled_dataset)", command=False)
    if input_column not in unlabeled.column_names and "teacher_features" not in unlabeled.column_names:
        raise AFTError(f"unlabeled_dataset has no column {input_column!r}, the labelled data's input column (it has "
                       f"{unlabeled.column_names}): rename its own (unlabeled_dataset.rename_column(NAME, "
                       f"{input_column!r})).")


def mark_checked(pool: datasets.Dataset | None) -> datasets.Dataset | None:
    """`pool`, marked as prepared from rows `load_unlabeled` checked: the trainer does not check it again (an image
    pool's files would be hashed twice)."""
    if pool is not None:
        _CHECKED_POOLS.add(pool._fingerprint)
    return pool


_CHECKED_POOLS: set[str] = set()  # fingerprints of the pools hf-aft train checked before preparing them


def pool_source(script_args) -> dict | None:
    """{"name": --unlabeled_dataset, "split": --unlabeled_split} as the card names the pool, or None without one."""
    if not script_args.unlabeled_dataset:
        return None
    return {"name": script_args.unlabeled_dataset, "split": script_args.unlabeled_split}
