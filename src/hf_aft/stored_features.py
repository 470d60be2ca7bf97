"""Teacher features the data already carries (a `hf-aft features` folder, a column made by `extract_teacher_features`):
before they are trained on instead of being made, they must be what the teacher options ask for, else one line says
how they differ. `features.with_teacher_features` calls this; the features themselves are never recomputed here."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import datasets
import pyarrow as pa

from .errors import AFTError, warn_once
from .teachers import same_teacher, teacher_label

logger = logging.getLogger(__name__)
_SAME_REVISION: set[tuple] = set()  # (spec, revision, files' stamp) found unchanged in this process: hashed once


def check_numeric_lists(dataset: datasets.Dataset, column: str, name: str) -> None:
    """The features column holds lists of numbers (per row; per word: lists of them), not text or scalars."""
    kind = inner = dataset.data.schema.field(column).type
    while pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_fixed_size_list(inner):
        inner = inner.value_type
    if inner is kind or not (pa.types.is_floating(inner) or pa.types.is_integer(inner)):
        raise AFTError(f"the {name}'s {column!r} column holds {kind}, not lists of numbers: remove or rename "
                       "it (hf-aft computes that column from --teachers).")


def check_stored_teachers(infos, teachers, options, column: str, name: str) -> None:
    """`infos` (the column's `features.TeacherInfo`s, None for the user's own column) came from `teachers` as
    `options` would make them: same teachers in order, the same backend, the pooling where the options name one
    (`teacher_pooling` other than `auto`): features of another pooling are another space than the one asked for, and
    no longer texts than a `teacher_max_length` set to other than its default allows (a shorter stored length may
    be the teacher's own limit capping the one asked for: kept, with a warning saying so).

    Raises:
        AFTError: the column has no record while teachers are given, or differs in one of the above (one line
            naming both sides and the way out).
    """
    stored = [info.name for info in infos or []]
    asked = [teacher_label(spec) for spec in teachers or []]
    if not asked:
        return
    if not stored:  # the user's own column, not the teachers' output: never taken for theirs
        raise AFTError(f"the {name} already has a {column!r} column with no record of the teachers that made it: "
                       f"remove or rename it to have {asked} compute the features (or, to train on it as it is, "
                       "hf-aft train without --teachers).")
    if len(stored) != len(asked) or not all(map(same_teacher, stored, asked)):
        raise AFTError(f"the {name} already carries the features of {stored}, not of the teachers given {asked}: "
                       f"pass those teachers (--teachers {' '.join(stored)}) to use them, or remove the {column!r} "
                       "column to have the teachers given make it.")
    check_stored_revisions(infos, teachers, name)
    made_with = {info.backend for info in infos}
    if made_with != {options.teacher_backend}:
        raise AFTError(f"the {name}'s features were made with --teacher_backend {', '.join(sorted(made_with))}, not "
                       f"{options.teacher_backend}: pass that backend (--teacher_backend) to use them, or remove "
                       f"the {column!r} column to have them made again.")
    asked_length = options.teacher_max_length
    default = next(f.default for f in dataclasses.fields(options) if f.name == "teacher_max_length")
    longer = [info for info in infos if asked_length != default and (info.max_length or 0) > asked_length]
    if longer:
        raise AFTError(f"the {name}'s features of {longer[0].name} were made from texts of up to "
                       f"{longer[0].max_length} tokens, not the --teacher_max_length {asked_length} given: leave "
                       f"--teacher_max_length out to use them, or remove the {column!r} column to have them made "
                       f"again at {asked_length}.")
    shorter = [info for info in infos if asked_length != default and 0 < (info.max_length or 0) < asked_length]
    if shorter:  # kept: the stored length may be the teacher's own limit capping the one asked for
        warn_once(logger, f"hf-aft: the {name}'s features of {shorter[0].name} were made from texts of up to "
                  f"{shorter[0].max_length} tokens, and --teacher_max_length {asked_length} was given: they are "
                  f"used as they are. Unless {shorter[0].max_length} is that teacher's own limit, remove the "
                  f"{column!r} column to have them made again at {asked_length}.")
    asked_pooling = options.teacher_pooling
    for info in infos:
        if asked_pooling not in ("auto", info.pooling) and info.pooling != "auto":  # auto here: nobody recorded it
            raise AFTError(f"the {name}'s features of {info.name} were made with {info.pooling} pooling, not the "
                           f"--teacher_pooling {asked_pooling} given: leave --teacher_pooling out to use them, or "
                           f"remove the {column!r} column to have them made with {asked_pooling} pooling.")


def check_stored_revisions(infos, teachers, name: str) -> None:
    """Each stored teacher's features are of the revision its spec gives now: a local folder or GGUF file by its
    content hash (changed since: another teacher, whose features these are not), a Hub id pinned to a commit sha by
    that sha. A Hub id unpinned, or pinned to a branch or tag, is not resolved (that needs the Hub; `hf-aft
    check-updates` follows it).

    Raises:
        AFTError: a teacher whose revision now differs from the one its stored features were made from.
    """
    from .provenance import current_revision, teacher_source
    from .teachers.spec import revision_in_scheme_of

    for info, spec in zip(infos, teachers, strict=True):
        spec = os.fspath(spec)
        source, requested, _ = teacher_source(spec)
        local = os.path.exists(source)
        seen = (spec, info.revision, _stamp(source) if local else None)
        if seen in _SAME_REVISION or not (local or _is_commit(requested)):
            continue
        now = revision_in_scheme_of(info.revision, current_revision(spec), spec) if local else requested
        if now != info.revision:
            raise AFTError(f"the {name}'s features of {info.name} were made from its revision {info.revision}, and "
                           f"{spec} is now {now}: it changed since, so they are not its features. Make them again "
                           "from it with hf-aft features and give that folder as --dataset_name, or restore that "
                           "revision (to train on these as they are: hf-aft train without --teachers).")
        _SAME_REVISION.add(seen)


def _is_commit(revision: str | None) -> bool:
    return bool(revision) and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def _stamp(path: str) -> tuple:
    """Each file's path, size and modification time under `path`: a model edited since it was last hashed differs."""
    files = [path] if os.path.isfile(path) else sorted(str(p) for p in Path(path).rglob("*") if p.is_file())
    return tuple((f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)
