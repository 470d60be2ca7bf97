"""Features once, training anywhere: a dataset saved with its teachers' features (`hf-aft features`).

The saved folder is a `save_to_disk` DatasetDict whose splits carry the `teacher_features` column with the teachers'
provenance in each split's info, and `teachers.json` beside them. An unlabelled pool can travel in it as one more
split (`UNLABELED_SPLIT`), with features made by the same path; `hf-aft train --dataset_name DIR --unlabeled_dataset
DIR --unlabeled_split unlabeled` then trains without loading any teacher.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

import datasets

from .data import check_texts
from .errors import AFTError
from .features import FEATURES_COLUMN, read_from_cache, read_teacher_infos, with_teacher_features
from .images import check_image_column
from .outputs import check_output_kind
from .teachers.spec import revision_in_scheme_of

PROVENANCE_FILE = "teachers.json"
UNLABELED_SPLIT = "unlabeled"


def save_feature_dataset(data: datasets.DatasetDict, splits: list[str], options, output_dir: str,
                         text_column: str = "text", image_column: str | None = None,
                         unlabeled: datasets.Dataset | None = None) -> list[dict]:
    """Add the teachers' features (`options.teachers`) to `splits` of `data` (and to `unlabeled`, saved as the split
    `unlabeled`) and save every split with `save_to_disk` into `output_dir`, with the provenance in each split's info
    and in `teachers.json` beside it. Returns the teachers' provenance as dicts, each with `from_cache` (no teacher
    ran for it).

    Raises:
        AFTError: a split that is not in `data`, a missing or empty input, an unlabelled pool beside a split already
            named `unlabeled`, an `output_dir` that holds a training run.
    """
    check_output_kind(output_dir, "features", "output_dir")
    missing = [split for split in splits if split not in data]
    if missing:
        raise AFTError(f"split(s) {missing} not found; the dataset has splits {list(data)}: pass --splits.")
    if unlabeled is not None and UNLABELED_SPLIT in data:
        raise AFTError(f"the dataset already has a split named {UNLABELED_SPLIT!r}: the unlabelled pool would replace "
                       "it; drop --unlabeled_dataset, or rename that split.")
    column = image_column or text_column
    copied = [s for s in data if s not in splits and column in data[s].column_names]
    for split in [*splits, *copied]:  # every saved split's inputs (an eval split is copied), before any teacher runs
        if image_column is None:
            check_texts(data[split], text_column, split)
        else:
            check_image_column(data[split], image_column, split)
    data = datasets.DatasetDict(data)
    if unlabeled is not None:
        data[UNLABELED_SPLIT], splits = unlabeled, [*splits, UNLABELED_SPLIT]
    for split in sorted(splits, key=lambda s: FEATURES_COLUMN not in data[s].column_names):  # checks before teachers
        name = f"{'unlabelled' if split == UNLABELED_SPLIT else repr(split)} split"
        data[split] = with_teacher_features(data[split], options, text_column, image_column, name=name)
    for split in splits[1:]:
        check_same_teachers(data[splits[0]], data[split], f"the {split!r} split's", f"the {splits[0]!r} split's")
    infos = [asdict(info) for info in read_teacher_infos(data[splits[0]]) or []]
    data.save_to_disk(output_dir)
    with open(os.path.join(output_dir, PROVENANCE_FILE), "w") as f:
        json.dump({"teachers": infos, "splits": splits, "text_column": text_column, "image_column": image_column}, f,
                  indent=2)
    cached = read_from_cache(data[splits[0]]) or [True] * len(infos)  # a column already there: nothing computed
    return [{**info, "from_cache": hit} for info, hit in zip(infos, cached, strict=True)]


def teacher_identity(infos) -> list[list]:
    """What makes teacher features the same space (`features.TeacherInfo`s, in column order): per teacher its
    revision (a local folder's content hash, a Hub commit), pooling, width and max length; not its name, which a path
    spells many ways."""
    return [[info.revision, info.pooling, info.dim, info.max_length] for info in infos]


def identity_text(revision: str, pooling: str, dim: int, max_length: int) -> str:
    """One teacher's `teacher_identity` as messages show it."""
    return f"{pooling} pooling, {dim}-d, max_length {max_length}, {revision[:19]}"


def _identity(dataset: datasets.Dataset) -> list[list] | None:
    """A dataset's `teacher_identity`; for features of the user's own (no record of their teachers) their width."""
    infos = read_teacher_infos(dataset)
    return [["own", _own_width(dataset)]] if infos is None else teacher_identity(infos)


def _own_width(dataset: datasets.Dataset) -> int:
    """The width of the first row's features (of its first word, for per-word features)."""
    value = dataset.select_columns([FEATURES_COLUMN])[0][FEATURES_COLUMN]
    while value and isinstance(value[0], list):
        value = value[0]
    return len(value or ())


def _described(dataset: datasets.Dataset) -> str:
    infos = read_teacher_infos(dataset)
    if infos is None:
        return f"a {_own_width(dataset)}-wide teacher_features column of its own (no record of its teachers)"
    return "; ".join(f"{i.name} ({identity_text(i.revision, i.pooling, i.dim, i.max_length)})" for i in infos)


def check_same_teachers(reference: datasets.Dataset, other: datasets.Dataset, other_name: str,
                        reference_name: str = "the labelled data's", made_here: str | None = None) -> None:
    """`other`'s teacher features were made as `reference`'s were (same teachers, revisions, pooling, widths and
    lengths, in the same order): the loss compares rows of both in one batch, so features of two spaces would be
    trained on silently. `other_name`, `reference_name`: possessives for the message ("the unlabelled data's");
    `made_here`: "other" or "reference", the set whose features this command made (its options can follow the
    other set's, and the refusal names them).

    Raises:
        AFTError: the teachers' records differ, or one set has its own features and the other a record.
    """
    stored, made = (reference, other) if made_here == "other" else (other, reference)
    if _identity(reference) == _identity(other) or (made_here and _same_as_recorded(stored, made)):
        return
    options = _options_to_match(read_teacher_infos(stored), read_teacher_infos(made)) if made_here else None
    source = reference_name if made_here == "other" else other_name
    first = f"Add {options} (what {source} features were made with), or make" if options else "Make"
    raise AFTError(f"{other_name} teacher features were not made as {reference_name} were: {_described(other)}, "
                   f"against {_described(reference)}. {first} both with the same teachers and options (hf-aft "
                   "features --unlabeled_dataset makes them together), or give the rows without their "
                   "teacher_features column so that they are made here.")


def _same_as_recorded(stored: datasets.Dataset, made: datasets.Dataset) -> bool:
    """`made`'s teachers (made by this command, their names paths here) are `stored`'s when their revisions are spelt
    as `stored`'s record does: features saved by an earlier hf-aft hold its content hash of a local teacher,
    computed again here (`spec.revision_in_scheme_of`)."""
    kept, new = read_teacher_infos(stored), read_teacher_infos(made)
    if not kept or not new or len(kept) != len(new):
        return False
    spelt = [replace(n, revision=revision_in_scheme_of(k.revision, n.revision, n.name))
             for k, n in zip(kept, new, strict=True)]
    return teacher_identity(kept) == teacher_identity(spelt)


def _options_to_match(reference: list | None, other: list | None) -> str | None:
    """The teacher options that would make `other`'s features as `reference`'s were ("--teacher_max_length 8"), when
    the same teachers at the same revisions differ in pooling or text length only; else None."""
    same = reference and other and len(reference) == len(other) and all(
        (r.name, r.revision, r.dim) == (o.name, o.revision, o.dim) for r, o in zip(reference, other, strict=True))
    if not same:
        return None
    flags = []
    for flag, field_name in (("--teacher_pooling", "pooling"), ("--teacher_max_length", "max_length")):
        values = [getattr(r, field_name) for r in reference]
        if values != [getattr(o, field_name) for o in other]:
            if len(set(values)) > 1:  # one option for every teacher cannot say it
                return None
            flags.append(f"{flag} {values[0]}")
    return " ".join(flags) or None
