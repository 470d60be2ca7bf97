"""A rerun from a run's recipe (`hf-aft train --config OUT/recipe.yaml`, `hf-aft check-updates --retrain`): is what
it names still what that run read?

A recipe pins Hub models to a commit, but names local models, data and the student as they were given, and a
relative path is relative to where the command runs. The run's `audit.json` beside the recipe holds each local
source's absolute path (and a model's content hash), so a rerun can tell when a name leads elsewhere: a source that is
not found from here is refused (a missing relative `--dataset_name data` would otherwise be looked up on the Hub,
where datasets' offline fallback can silently return a cached dataset of that name), a local model whose content
changed is warned about, and `--retrain` names the recorded paths itself.
"""

from __future__ import annotations

import json
import os
import shlex

from .audit import followed_models, read_record
from .errors import AFTError
from .provenance import current_revision, source_path, student_revision
from .teachers.spec import revision_in_scheme_of

# role -> the train option that names it; the models' roles are audit.followed_models' own
OPTIONS = {"teacher": "--teachers", "generator": "--generator", "distill_teacher": "--distill_teacher",
           "dataset": "--dataset_name", "unlabeled_dataset": "--unlabeled_dataset", "student": "--model_name_or_path"}
DATA_ROLES = ("dataset", "unlabeled_dataset", "student")  # not followed by check-updates: --retrain relocates them


def recorded_sources(record: dict) -> list[dict]:
    """Every local source a run read, each {role, spec (as named), path (absolute, then), revision (a content hash;
    None for data)}: its models, its labelled and unlabelled data and its student initialisation (records from
    before the data's and student's paths have only the models')."""
    data, student = record.get("dataset") or {}, record.get("student") or {}
    found = [{"role": m["role"], "spec": m.get("spec"), "path": m.get("path"), "revision": m["resolved_revision"]}
             for m in followed_models(record)]
    found += [{"role": "dataset", "spec": data.get("name"), "path": data.get("path"), "revision": None},
              {"role": "unlabeled_dataset", "spec": data.get("unlabeled_dataset"), "path": data.get("unlabeled_path"),
               "revision": None},
              {"role": "student", "spec": student.get("init"), "path": student.get("path"),
               "revision": student.get("revision")}]
    return [s for s in found if s["spec"] and s["path"]]


def rerun_sources(folder: str, named: dict[str, list]) -> list[dict]:
    """The recorded local sources of the run in `folder` (`recorded_sources`) that a rerun names as that run did
    (`named`: role -> the specs the rerun names); [] without an audit record there."""
    try:
        record = read_record(folder)
    except AFTError:
        return []
    return [s for s in recorded_sources(record) if s["spec"] in named.get(s["role"], ())]


def check_sources(sources: list[dict]) -> None:
    """Refuse a rerun from a run's recipe when a local source it names as that run did (`rerun_sources`) is not
    found from here.

    Raises:
        AFTError: one line naming each such source, the path the run read it from and the way out: run from the
            directory the run ran in, or name the paths (where they are now, for those gone from there too).
    """
    gone = [s for s in sources if source_path(s["spec"]) is None]
    if gone:
        raise AFTError(_refusal(gone))


def _refusal(gone: list[dict]) -> str:
    """The line that refuses sources whose names lead nowhere from here: run from where the run ran (when every one
    is still at its recorded path, relative to one directory), or name the paths (PATH for one gone from there)."""
    there = [source_path(s["path"]) is not None for s in gone]
    what = ", ".join(f"{_role(s)} {s['spec']!r} from {s['path']}" + ("" if ok else " (gone from there too)")
                     for s, ok in zip(gone, there, strict=True))
    bases = {_base(s["spec"], s["path"]) for s in gone}
    where = f"run it from {bases.pop()}, or " if all(there) and len(bases) == 1 and None not in bases else ""
    values = {}  # flag -> its values, in order: several teachers go after one --teachers
    for s, ok in zip(gone, there, strict=True):
        values.setdefault(OPTIONS[s["role"]], []).append(shlex.quote(s["path"]) if ok else "PATH")  # a pattern: one
    options = ", ".join(f"{flag} {' '.join(paths)}" for flag, paths in values.items())
    relative = " (a recipe's relative paths are relative to where it runs)" if any(
        not os.path.isabs(s["spec"]) for s in gone) else ""
    one = len(gone) == 1
    paths = (f"name {'the path' if one else 'the paths'}" if all(there) else
             f"name {'where it is now' if one else 'where they are now'}")
    return (f"the recipe's run read {what}; from here {'that name leads' if one else 'those names lead'} nowhere"
            f"{relative}: {where}{paths} ({options}).")


def _role(source: dict) -> str:
    return source["role"].replace("_", " ")


def _base(spec: str, path: str) -> str | None:
    """The directory the run ran in, when `spec` is a relative path that led to `path` from there (the first of
    comma-separated files)."""
    relative, path = os.path.normpath(spec.split(",")[0].strip()), path.split(",")[0]
    if os.path.isabs(relative) or not path.endswith(os.sep + relative):
        return None
    return path[: -len(relative) - 1] or os.sep


def processes_differ(folder: str, processes: int) -> list[str]:
    """For a rerun from the recipe in `folder` on `processes` processes: one line when the recipe's run trained on
    another number (each process takes a batch of --per_device_train_batch_size, so the global batch, AFT's kernel
    over it and the number of steps differ); [] when the same, or without a record of that number."""
    try:
        recorded = read_record(folder).get("processes")
    except AFTError:
        return []
    if not recorded or recorded == processes:
        return []
    return [f"hf-aft: the recipe's run trained on {recorded} processes, this rerun on {processes}: its global batch "
            f"is {processes}/{recorded} of that run's, so it will not reproduce that student; launch it as that run "
            f"was (accelerate launch --multi_gpu --num_processes {recorded} -m hf_aft train --config ...)."]


def moved_since(sources: list[dict]) -> list[str]:
    """For a rerun from a run's recipe: one line per local source that the rerun names as that run did
    (`rerun_sources`) but that is not what the run read: a model or student whose
    content changed since, or whose (relative) name now leads to another folder or file that differs; data whose
    name leads to another path (data is not hashed: an identical copy there is warned about too). Hub models are
    pinned to their commit in the recipe and are not checked; nor is a recipe without its run's audit record."""
    lines = []
    for source in sources:
        spec, path, old = source["spec"], source["path"], source["revision"]
        here = source_path(spec)
        if here is None:  # gone: check_sources refuses it
            continue
        if old is None:  # data
            if here != path:
                lines.append(f"hf-aft: {_role(source)} {spec!r} is {here} here, not the recipe's run's {path}: "
                             "unless it holds the same rows, this run will not reproduce that student.")
            continue
        new = current_revision(spec, _role(source)) if source["role"] != "student" else student_revision(spec)
        if revision_in_scheme_of(old, new, spec, _role(source)) == old:  # the same files (an identical copy
            continue  # elsewhere reproduces the run too), by the hash of the hf-aft that recorded them
        moved = f"is {here} here, not the recipe's run's {path}, and differs" if here != path else \
            "changed since the recipe's run"
        lines.append(f"hf-aft: {_role(source)} {spec!r} {moved} (revision {old[:25]} -> {new[:25]}): this run will "
                     "not reproduce that student.")
    return lines


def data_differs(folder: str, new_folder: str, same_source: bool = False) -> list[str]:
    """After a rerun from the recipe of the run in `folder` into `new_folder`: one line per split of the data that
    run named (labelled, unlabelled) whose rows or labels differ from that run's (a file deleted from a pattern, rows
    added to a folder, a text edited in place: records from before the content hash compare counts only). Split
    fingerprints are not compared: datasets' fingerprint of data files depends on where they are. Data the rerun
    names otherwise (another `--dataset_name`) is not compared, unless `same_source` says it is the run's data moved
    (`check-updates --retrain`, which names the recorded paths or `--dataset_name` itself)."""
    try:
        old, new = read_record(folder), read_record(new_folder)
    except AFTError:
        return []
    same = {key: same_source or (old.get("dataset") or {}).get(key) == (new.get("dataset") or {}).get(key)
            for key in ("name", "unlabeled_dataset")}
    lines = []
    for split, facts in (old.get("splits") or {}).items():
        now = (new.get("splits") or {}).get(split)
        if now is None or not same["unlabeled_dataset" if split == "unlabeled" else "name"]:
            continue
        # a record from before a regression's targets were summarised (each number counted as a class, under
        # "labels") is compared by its rows and content hash only: its form differs, not its data
        summaries = [key for key in ("labels", "targets") if key in facts and key in now]
        if facts.get("rows") != now.get("rows") or any(facts[key] != now[key] for key in summaries):
            lines.append(f"hf-aft: the {split} split has {_rows(now)} here, the recipe's run's had {_rows(facts)}: "
                         "this run did not reproduce that student.")
        elif None not in (was := facts.get("rows_sha256"), new_sha := now.get("rows_sha256")) and was != new_sha:
            lines.append(f"hf-aft: the {split} split has as many rows and labels as the recipe's run's, but other "
                         f"content (sha256 {new_sha[:12]} here, {was[:12]} there): this run did not reproduce "
                         "that student.")
    return lines


def _rows(facts: dict) -> str:
    labels = facts.get("labels") or facts.get("targets")
    return f"{facts['rows']} rows" + (f" ({json.dumps(labels, sort_keys=True)})" if labels else "")


def relocated(record: dict, dataset_name: str | None = None) -> list[str]:
    """`hf-aft train` tokens for `check-updates --retrain`, run from any directory: the run's local data and student
    by their recorded paths where the recipe's names lead elsewhere now (its models are followed the same way by
    `updates.tracked_spec`), and `dataset_name` (the run's data at another path) when given.

    Raises:
        AFTError: data or a student that the recipe's name does not lead to and that is gone from its recorded path.
    """
    tokens = ["--dataset_name", dataset_name] if dataset_name else []
    for source in recorded_sources(record):
        role, spec, path = source["role"], source["spec"], source["path"]
        if role not in DATA_ROLES or (role == "dataset" and dataset_name) or source_path(spec) == path:
            continue
        if source_path(path) is None:
            way = "pass --dataset_name with where it is now" if role == "dataset" else f"put it back at {path}"
            raise AFTError(f"the run's {_role(source)} {spec!r} is gone from {path}, where it read it: {way} (the "
                           "retrain reads the run's recipe and data).")
        tokens += [OPTIONS[role], path]
    return tokens
