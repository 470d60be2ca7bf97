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

import os

from .audit import followed_models, read_record
from .errors import AFTError
from .provenance import current_revision, local_path

# role -> the train option that names it; the models' roles are audit.followed_models' own
OPTIONS = {"teacher": "--teachers", "generator": "--generator", "distill_teacher": "--distill_teacher",
           "dataset": "--dataset_name", "unlabeled_dataset": "--unlabeled_dataset", "student": "--model_name_or_path"}


def recorded_sources(record: dict) -> list[dict]:
    """Every local source a run read, each {role, spec (as named), path (absolute, then)}: its models, its labelled and
    unlabelled data and its student initialisation (records from before the data's and student's paths have only the
    models')."""
    data, student = record.get("dataset") or {}, record.get("student") or {}
    found = [{"role": m["role"], "spec": m.get("spec"), "path": m.get("path")} for m in followed_models(record)]
    found += [{"role": "dataset", "spec": data.get("name"), "path": data.get("path")},
              {"role": "unlabeled_dataset", "spec": data.get("unlabeled_dataset"), "path": data.get("unlabeled_path")},
              {"role": "student", "spec": student.get("init"), "path": student.get("path")}]
    return [s for s in found if s["spec"] and s["path"]]


def check_sources(folder: str, named: dict[str, list]) -> None:
    """Refuse a rerun from the recipe of the run in `folder` that names a local source as that run did (`named`:
    role -> the specs the rerun names) when that name is not found from here. No audit record there: nothing to check.

    Raises:
        AFTError: one line naming each such source, the path the run read it from and the way out.
    """
    try:
        record = read_record(folder)
    except AFTError:
        return
    gone = [s for s in recorded_sources(record) if s["spec"] in named.get(s["role"], ()) and not local_path(s["spec"])]
    if not gone:
        return
    what = ", ".join(f"{s['role'].replace('_', ' ')} {s['spec']!r} from {s['path']}" for s in gone)
    bases = {_base(s["spec"], s["path"]) for s in gone}
    where = f"run it from {bases.pop()}, or " if len(bases) == 1 and None not in bases else ""
    options = ", ".join(f"{OPTIONS[s['role']]} {s['path']}" for s in gone)
    names = "that name leads" if len(gone) == 1 else "those names lead"
    raise AFTError(f"the recipe's run read {what}; from here {names} nowhere (a recipe's relative paths are relative "
                   f"to where it runs): {where}name {'the path' if len(gone) == 1 else 'the paths'} ({options}).")


def _base(spec: str, path: str) -> str | None:
    """The directory the run ran in, when `spec` is a relative path that led to `path` from there."""
    relative = os.path.normpath(spec)
    if os.path.isabs(relative) or not path.endswith(os.sep + relative):
        return None
    return path[: -len(relative) - 1] or os.sep


def moved_since(folder: str, used: dict[str, list]) -> list[str]:
    """For a rerun from the recipe of the run in `folder`: one line per local model that the rerun names as that run
    did (`used`: role -> the specs the rerun names) but whose content is not what the run was made from: changed
    since, or its (relative) name now leads to another folder or file that differs. Hub models are pinned to their
    commit in the recipe and are not checked; nor is a recipe without its run's audit record beside it."""
    try:
        record = read_record(folder)
    except AFTError:
        return []
    lines = []
    for model in followed_models(record):
        spec, role = model.get("spec"), model["role"].replace("_", " ")
        here = local_path(spec) if model.get("path") and spec in used.get(model["role"], ()) else None
        if here is None:  # a Hub model, one the rerun replaced, or one that is gone (check_sources refuses that)
            continue
        old, new = model["resolved_revision"], current_revision(spec, role)
        if new == old:  # the same files (an identical copy elsewhere reproduces the run too)
            continue
        moved = f"is {here} here, not the recipe's run's {model['path']}, and differs" if here != model["path"] else \
            "changed since the recipe's run"
        lines.append(f"hf-aft: {role} {spec!r} {moved} (revision {old[:12]} -> {new[:12]}): this run will not "
                     "reproduce that student.")
    return lines


def relocated(record: dict) -> list[str]:
    """`hf-aft train` tokens that name the run's local data and student by their recorded paths where the names in
    the recipe no longer lead there but the paths still exist (for `--retrain` run from another directory; its
    models are followed the same way by `updates.tracked_spec`)."""
    tokens = []
    for source in recorded_sources(record):
        role, spec, path = source["role"], source["spec"], source["path"]
        if role in ("dataset", "unlabeled_dataset", "student") and local_path(spec) != path and os.path.exists(path):
            tokens += [OPTIONS[role], path]
    return tokens
