"""Teacher updates (`hf-aft check-updates RUN [--retrain NEW_OUT]`): has any model a finished run was made from (its
teachers, its generator, its task teacher of distillation) moved since?

Each recorded model is resolved again at the revision it was requested at (the branch or tag on the Hub: `main`
when none was given; the content hash of a local folder or GGUF file). `--retrain` reruns the run's recipe with the
new revisions (the per-teacher feature cache recomputes only the changed teachers; a changed generator writes its
texts again), then evaluates the old and the new student on the same evaluation split: `update_report.json` (the
task's metrics old vs new: accuracy and macro-F1, micro-F1..., MSE...; per-class recall for one label per row; the
share of examples on which the two decide alike) and a "History" section in the new card. The old run is only read.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .audit import followed_models, read_record, seal
from .card import read_card_inputs, write_model_card
from .errors import AFTError
from .evaluation import (
    agreement,
    class_names,
    eval_split,
    load_run_student,
    predict_logits,
    problem_type_of,
    run_folder,
    scores,
)
from .finished_marker import UPDATE_REPORT_NAME
from .group_report import check_group_columns, flag_lines, group_report
from .groups import MIN_GROUP_ROWS
from .hub_reach import check_hub_reachable
from .provenance import current_revision, local_path, student_revision, teacher_source
from .recipe import RECIPE_NAME, read_recipe
from .reruns import relocated
from .targets import SINGLE, TOKEN
from .teachers.spec import GGUF_SEPARATOR, is_hub_revision, revision_in_scheme_of

ROLE_OPTIONS = {"teacher": "--teachers", "generator": "--generator", "distill_teacher": "--distill_teacher"}


def tracked_spec(model: dict) -> str:
    """The model as it is followed: a local one by its recorded absolute path (as it was named when that still leads
    there, so that a retrain reuses the unchanged teachers' features); a Hub one by its name at the requested branch
    or tag (none: the default branch)."""
    spec = model.get("spec") or model["name"]
    if model.get("path"):
        return spec if local_path(spec) == model["path"] else model["path"]
    if os.path.exists(spec.partition(GGUF_SEPARATOR)[0]):  # a local model of a record from before `path`
        return spec
    requested = model.get("requested_revision")
    name, _, gguf_file = teacher_source(spec)
    source = f"{name}@{requested}" if requested else name
    return f"{source}::{gguf_file}" if gguf_file else source


def check_updates(record: dict) -> list[dict]:
    """Per model the run was made from (`followed_models`): role, name, the spec it is followed at, old and new
    revision, and whether it changed (`earlier_hash`: compared by the content hash of the earlier hf-aft that recorded
    it, `spec.revision_in_scheme_of`).

    Raises:
        AFTError: a model that cannot be resolved now (a revision gone from the Hub, a folder that was removed), or
            a Hub model while the Hub cannot be reached (offline, its cache would say "unchanged").
    """
    rows = []
    for model in followed_models(record):
        spec, role = tracked_spec(model), model["role"].replace("_", " ")
        if model.get("path") and local_path(spec) is None:  # a local model gone from where the run read it
            raise AFTError(f"{role} {model['name']!r} is gone from {model['path']}, where the run read it: put it "
                           "back there to check it for updates (and to retrain: the rerun reads the run's recipe).")
        if local_path(spec) is None:
            check_hub_reachable(f"{role} {model['name']!r}")
        rows.append(_row(model, spec, model["resolved_revision"], current_revision(spec, role)))
    return rows + _student_row(record)


def _row(model: dict, spec: str, old: str, new: str) -> dict:
    """One model's row; a record of an earlier hf-aft is compared by its own content hash (`earlier_hash`)."""
    compared = revision_in_scheme_of(old, new, spec, model["role"].replace("_", " "))
    return {"role": model["role"], "name": model["name"], "spec": spec,
            "requested_revision": model.get("requested_revision"), "old": old, "new": new, "changed": compared != old,
            "earlier_hash": compared != new}


def _student_row(record: dict) -> list[dict]:
    """The student's initialisation when it was a local folder (content-hashed; a Hub one is pinned by the recipe's
    name only): a run made from it is made from it as from its teachers. [] when gone (--retrain names it)."""
    student = record.get("student") or {}
    path, old = student.get("path"), student.get("revision")
    if not path or not os.path.isdir(path) or not str(old).startswith("local-"):
        return []
    return [_row({"role": "student", "name": student.get("init") or path}, path, old, student_revision(path))]


def retrain_spec(row: dict) -> str:
    """A model of the rerun: from the Hub pinned to its new commit, a local one as it is named."""
    name, _, gguf_file = teacher_source(row["spec"])
    if os.path.exists(name) or not is_hub_revision(row["new"]):
        return row["spec"]
    return f"{name}@{row['new']}" + (f"::{gguf_file}" if gguf_file else "")


def retrain_argv(folder: str, rows: list[dict], new_output_dir: str, dataset_name: str | None = None) -> list[str]:
    """The `hf-aft train` tokens that rerun the run in `folder` with the models' new revisions (and on `dataset_name`,
    the run's data at another path, when given)."""
    argv = ["--config", os.path.join(folder, RECIPE_NAME), "--output_dir", new_output_dir]
    argv += relocated(read_record(folder), dataset_name)  # the run's data and student, wherever this runs
    for role, option in ROLE_OPTIONS.items():
        specs = [retrain_spec(row) for row in rows if row["role"] == role]
        argv += [option, *specs] if specs else []
    return argv


def compare_students(old_folder: str, new_folder: str, dataset_name: str | None = None,
                     group_columns: list[str] | None = None, min_rows: int | None = None) -> dict:
    """Both students on the new run's evaluation split: each one's scores in its task's metrics (`metrics`: their
    names; single-label: accuracy, macro-F1 and per-class recall), the share of examples on which their decisions
    agree (None for regression), and with `group_columns` (default: the new run's --group_column and
    --group_min_rows) the new student against the old one group by group (`groups`, as in group_report.json)."""
    split, column, image_column, max_length = eval_split(new_folder, dataset_name)
    group_columns, min_rows = group_options(new_folder, group_columns, min_rows, split)
    results = {}
    for role, folder in (("old", old_folder), ("new", new_folder)):
        model, processor = load_run_student(folder)
        logits = predict_logits(model, processor, split, column, image_column, max_length)
        task = problem_type_of(model)
        results[role] = (logits, scores(logits, split["labels"], class_names(model, logits.shape[1]), *task))
    (old_logits, old), (new_logits, new) = results["old"], results["new"]
    metrics = [k for k, v in new.items() if isinstance(v, float)]
    comparison = {"eval_rows": len(split), "problem_type": task[0], "metrics": metrics,
                  "old": {k: old.get(k) for k in metrics}, "new": {k: new[k] for k in metrics},
                  "agreement": agreement(old_logits, new_logits, *task),
                  "agreement_of": "words" if task[0] == TOKEN else "examples"}  # token classifiers decide per word
    if task[0] == SINGLE:
        comparison["per_class_recall"] = {name: {"old": old["per_class_recall"][name],
                                                 "new": new["per_class_recall"].get(name)}
                                          for name in old["per_class_recall"]}
    if group_columns:
        comparison["groups"] = group_report(new_logits.argmax(-1), np.asarray(split["labels"]), split, group_columns,
                                            min_rows, baseline=old_logits.argmax(-1),
                                            baseline_name="the old student")
    return comparison


def group_options(folder: str, group_columns: list[str] | None = None, min_rows: int | None = None,
                  split=None, dataset_name: str | None = None) -> tuple[list[str] | None, int]:
    """(group columns, minimum rows) of a comparison: those given, else the run's recipe's; checked on the run's
    evaluation split (`split`, else loaded) before anything is retrained.

    Raises:
        AFTError: a column that split lacks, groups all too small, a minimum under 1 (`check_group_columns`).
    """
    recipe = read_recipe(folder)
    replayed = [c for c in recipe.get("group_column") or [] if split is not None and c not in split.column_names]
    if replayed:  # the retrain replays the recipe's columns, whatever this command's --group_column says
        raise AFTError(f"the run's recipe names --group_column {replayed[0]!r}, which the retrain replays, and the "
                       f"evaluation split has no such column (it has {split.column_names}): give --dataset_name data "
                       "that has that column (check-updates' own --group_column sets only the comparison's groups).")
    group_columns = group_columns or recipe.get("group_column")
    min_rows = min_rows if min_rows is not None else recipe.get("group_min_rows", MIN_GROUP_ROWS)
    if group_columns:
        split = split if split is not None else eval_split(folder, dataset_name)[0]
        check_group_columns(split, group_columns, min_rows, recipe.get("eval_split") or "eval")
    return group_columns, min_rows


def record_update(new_output_dir: str, previous: str, record: dict, rows: list[dict], comparison: dict,
                  data_changes: list[str] = ()) -> dict:
    """Write update_report.json and the History section into the new run, carry the teachers' requested revisions
    forward (so the next check follows the same branch or tag), and hash the new run's files again. `data_changes`:
    `reruns.data_differs`' lines (the retrain read other rows than the run did)."""
    report = {"previous_run": previous, "previous_ended": record.get("ended"),
              "teachers": [row for row in rows if row["role"] == "teacher"],
              "other_models": [row for row in rows if row["role"] != "teacher"],
              "data_changes": list(data_changes), **comparison}
    with open(os.path.join(new_output_dir, UPDATE_REPORT_NAME), "w") as f:
        json.dump(report, f, indent=2)
    facts = read_card_inputs(new_output_dir)
    if facts is None:
        raise AFTError(f"{new_output_dir!r} has no model_card.json: it is not the output dir of an hf-aft run.")
    facts["history"] = {"previous": previous, "previous_ended": record.get("ended"),
                        "changed": [r for r in rows if r["changed"]], "agreement": comparison["agreement"],
                        "agreement_of": comparison.get("agreement_of", "examples"),
                        "scores": [{"name": k, "old": comparison["old"][k], "new": comparison["new"][k]}
                                   for k in comparison["metrics"]],
                        "flagged_groups": flag_lines(comparison["groups"]) if "groups" in comparison else [],
                        "data_changes": list(data_changes)}
    write_model_card(new_output_dir, **facts)
    new_record = read_record(new_output_dir)
    teachers = [row for row in rows if row["role"] == "teacher"]  # the rerun pinned them: follow what the old one did
    for teacher, row in zip(new_record.get("teachers") or [], teachers, strict=False):
        teacher["requested_revision"] = row["requested_revision"]
    others = {row["role"]: row for row in rows if row["role"] != "teacher"}
    for model in new_record.get("other_models") or []:
        if model["role"] in others:
            model["requested_revision"] = others[model["role"]]["requested_revision"]
    new_record["previous_run"] = previous
    with open(os.path.join(new_output_dir, "audit.json"), "w") as f:
        json.dump(new_record, f, indent=2, default=str)
    seal(new_output_dir)
    return report


def load_run(source: str) -> tuple[str, dict]:
    """(folder, audit record) of a finished run given as an output dir or a Hub model id."""
    folder, _ = run_folder(source)
    return folder, read_record(folder)
