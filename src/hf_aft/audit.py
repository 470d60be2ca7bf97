"""`OUT/audit.json`: the lineage of a run and the sha256 of every file it wrote, and `hf-aft audit` to check them.

The record holds the versions of hf-aft and its libraries, Python, the device, the start and end time (UTC); per split
its rows, label distribution (a regression's targets: mean, standard deviation, minimum, maximum) and fingerprint;
per teacher the requested revision, the resolved commit (or content hash) and the sha256 of its weight files (the Hub
cache snapshot of that commit, or the local folder's files), and the same for the generator and the task teacher of
distillation when a run used them (`other_models`); the feature cache's fingerprint; the student's initialisation and
its revision; the metrics; and, computed last (after the card), the sha256 of every file in OUT but audit.json
itself. `verify` compares a folder (or a Hub snapshot, where only the files that are pushed count) with it: one line
per changed, missing or added file.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .card import CARD_INPUTS_NAME, CARD_NAME, terms_note
from .claims import CLAIM_NAME, carried_run_ids
from .errors import AFTError, first_line
from .finished_marker import COMPLETE_NAME, SET_ASIDE_NAME
from .hub import IGNORE_PATTERNS
from .outputs import SCALES_PLOT_NAME
from .provenance import current_revision, file_hashes, local_path, teacher_folder, teacher_source, weight_files
from .teachers.spec import is_hub_revision, revision_in_scheme_of

AUDIT_NAME = "audit.json"
AUDIT_VERSION = 1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def model_record(spec: str | None, revision: str, name: str | None = None) -> dict:
    """One model's lineage: requested and resolved revision, sha256 of its weight files (a model whose files are not
    here any more gets a `note` instead), and a local model's absolute `path`. `spec` as the model was named (None:
    `name` at `revision`)."""
    source, requested, gguf_file = teacher_source(spec) if spec else (name, None, None)
    record = {"name": name or source, "spec": spec, "requested_revision": requested, "resolved_revision": revision}
    if spec and (path := local_path(spec)):  # check-updates follows this model here, wherever it runs
        record["path"] = path
    try:
        _check_same_local_model(spec or source, revision)
        record["weight_files"] = file_hashes(weight_files(teacher_folder(source, revision), gguf_file))
    except (AFTError, OSError) as error:
        record["note"] = f"weight files not hashed: {first_line(error)}"
    return record


def _check_same_local_model(spec: str, revision: str) -> None:
    """A local model is still at `revision` (its content hash), so its files' sha256 are that revision's: features
    stored by `hf-aft features` may be of an earlier state of the folder (raises AFTError naming both hashes)."""
    if is_hub_revision(revision) or not local_path(spec):
        return
    now = revision_in_scheme_of(revision, current_revision(spec), spec)
    if now != revision:
        raise AFTError(f"{spec} is now {now}, not the {revision} the run recorded (changed since)")


def teacher_record(spec: str | None, info) -> dict:
    """One teacher's lineage (`model_record`) with its pooling and feature width."""
    return {**model_record(spec, info.revision, info.name), "pooling": info.pooling, "width": info.dim}


def other_models(terms: dict) -> list[dict]:
    """The models besides the teachers that made the student's training signal, each a `model_record` with its
    `role`: the `--generator` that wrote unlabelled texts, the `--distill_teacher` whose logits were targets."""
    found = [("generator", terms.get("generator"), terms.get("generator_revision")),
             ("distill_teacher", terms.get("distill_teacher"), terms.get("distill_teacher_revision"))]
    return [{"role": role, **model_record(spec, revision, name=spec)}
            for role, spec, revision in found if spec and revision]


def followed_models(record: dict) -> list[dict]:
    """The models a run was made from, each with its `role`: the teachers, then the generator and the task teacher
    of distillation when it used them (`other_models`)."""
    return [{"role": "teacher", **t} for t in record.get("teachers") or []] + list(record.get("other_models") or [])


def output_files(folder: str) -> dict[str, Path]:
    """Every file under `folder` (relative posix path -> path) except the top-level audit.json, the completion
    marker written after it, and a running run's markers (its claim, the earlier run's marker it set aside)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            if relative not in (AUDIT_NAME, COMPLETE_NAME, CLAIM_NAME, SET_ASIDE_NAME):
                found[relative] = path
    return dict(sorted(found.items()))


def write_record(output_dir: str, record: dict) -> None:
    with open(os.path.join(output_dir, AUDIT_NAME), "w") as f:
        json.dump(record, f, indent=2, default=str)


def read_record(folder: str) -> dict:
    """The audit record of a run's folder.

    Raises:
        AFTError: no readable audit.json there.
    """
    path = os.path.join(folder, AUDIT_NAME)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise AFTError(f"could not read the audit record {path!r} ({type(error).__name__}): give the output dir (or "
                       "Hub repo) of an hf-aft train run that wrote one.") from error


def seal(output_dir: str, names: tuple[str, ...] | None = None) -> dict:
    """Hash the files of `output_dir` into its audit.json (all of them, or only `names` when they exist) and write
    it; returns the record. The last step of a run, after the card."""
    record = read_record(output_dir)
    files = output_files(output_dir)
    if names is None:
        record["files"] = file_hashes(files)
    else:
        record["files"].update(file_hashes({n: p for n, p in files.items() if n in names}))
    record["sealed"] = utc_now()
    write_record(output_dir, record)
    return record


def reseal_card(output_dir: str) -> None:
    """After the card was rendered again (for another repo id, a baseline, a history): hash the card's files anew.
    A folder without an audit record is left alone."""
    if os.path.exists(os.path.join(output_dir, AUDIT_NAME)):
        seal(output_dir, (CARD_NAME, CARD_INPUTS_NAME, SCALES_PLOT_NAME))


def pushed(paths) -> list[str]:
    """The paths among `paths` that a push uploads (hub.py's IGNORE_PATTERNS and the client's own)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    return list(filter_repo_objects(list(paths), ignore_patterns=IGNORE_PATTERNS + list(DEFAULT_IGNORE_PATTERNS)))


def differences(folder: str, record: dict, hub_copy: bool = False) -> list[tuple[str, str]]:
    """(kind, file name) per file that differs from the record, kind one of `changed`, `missing`, `added` or `foreign`
    (a file naming another run, whose name carries that run); empty: all unchanged. For a Hub copy only the files a
    push uploads are compared."""
    expected = record.get("files") or {}
    present = output_files(folder)
    if hub_copy:
        expected = {name: expected[name] for name in pushed(expected)}
        present = {name: present[name] for name in pushed(present)}
    actual = file_hashes({name: path for name, path in present.items() if name in expected})
    found = [("changed", name) for name in expected if name in actual and actual[name] != expected[name]]
    found += [("missing", name) for name in expected if name not in present]
    found += [("added", name) for name in present if name not in expected]
    if record.get("run_id"):  # a file that names another run was not written by this one, whatever its hash
        found += [("foreign", f"{name} (written by run {run_id}, not {record['run_id']})")
                  for name, run_id in carried_run_ids(folder).items()
                  if run_id != record["run_id"] and name in present and name != AUDIT_NAME]
    return found


def verify(folder: str, record: dict, hub_copy: bool = False) -> list[str]:
    """`differences` as `hf-aft audit` prints them, one line each ("changed  model.safetensors")."""
    return [f"{kind:<8} {name}" for kind, name in differences(folder, record, hub_copy)]


def check_pushable(folder: str, keep_card: bool = False) -> None:
    """Before `hf-aft push`: the files a push uploads are those the run wrote (`verify`), so that the card's and
    audit.json's hashes hold on the Hub; a card edited by hand passes with `keep_card` (push would render it again).

    Raises:
        AFTError: a file changed, missing, added or written by another run, naming them; a card edited by hand
            without `keep_card`.
    """
    if not os.path.exists(os.path.join(folder, AUDIT_NAME)):  # not written by hf-aft train: nothing to hold
        return
    problems = differences(folder, read_record(folder), hub_copy=True)
    edited_card = ("changed", CARD_NAME) in problems
    problems = [p for p in problems if p != ("changed", CARD_NAME)]
    if problems:
        listed = "; ".join(f"{kind} {name}" for kind, name in problems)
        raise AFTError(f"{folder!r} is not as its run wrote it ({listed}): pushed, its card and audit.json would "
                       f"state false sha256. Put the run's files back, or move added ones out (`hf-aft audit "
                       f"{folder}` lists them), then push again.")
    if edited_card and not keep_card:
        raise AFTError(f"{os.path.join(folder, CARD_NAME)!r} was edited since the run: push renders the card again "
                       "for the repo and would lose the edits. Push it as it is with --keep_card (its new sha256 is "
                       "recorded), or undo the edits.")


def weights_hash(record: dict) -> dict[str, str]:
    """The sha256 of the student's weight files, as recorded."""
    return {name: sha for name, sha in (record.get("files") or {}).items()
            if "/" not in name and name.split(".")[0].split("-")[0] in ("model", "pytorch_model", "adapter_model")
            and name.endswith((".safetensors", ".bin"))}


def labels_text(facts: dict, column: str | None = None) -> str:
    """A split's labels as the audit table shows them: the class counts, or a regression's targets (`provenance.
    split_summary`; one target is named by the label `column`), e.g. "targets score mean 1020 (std 20.1, min 1000,
    max 1041); drift mean ..."."""
    targets = facts.get("targets")
    if targets is None:
        return f"labels {facts.get('labels')}"

    def stats(summary: dict) -> str:
        return f"mean {summary['mean']:.4g} (std {summary['std']:.4g}, min {summary['min']:.4g}, max " \
               f"{summary['max']:.4g})" if summary else "none"

    if not targets or not isinstance(targets.get("mean", {}), dict):  # one target: its numbers, not a dict per name
        return f"targets {column + ' ' if column else ''}{stats(targets)}"
    return "targets " + "; ".join(f"{name} {stats(summary)}" for name, summary in targets.items())


def lineage_lines(record: dict) -> list[str]:
    """The lineage as a small table: run, student, data, teachers (and generator, task teacher), metrics."""
    student = record.get("student", {})
    lines = [f"{'run':<22}{record.get('started', '?')} -> {record.get('ended', '?')} on {record.get('device', '?')}",
             f"{'versions':<22}" + ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items()),
             f"{'student init':<22}{student.get('init')} @ {student.get('revision')}"]
    if resumed := record.get("resumed_from"):  # the run was interrupted, then continued from this checkpoint
        lines.insert(1, f"{'resumed':<22}from {resumed.get('checkpoint')} at step {resumed.get('step')}")
    column = (record.get("dataset") or {}).get("label_column")
    for split, facts in (record.get("splits") or {}).items():
        lines.append(f"{'split ' + split:<22}{facts.get('rows')} rows, {labels_text(facts, column)}, fingerprint "
                     f"{facts.get('fingerprint')}")
    for model in followed_models(record):
        files = len(model.get("weight_files") or {})
        requested = model.get("requested_revision") or "(default)"
        lines.append(f"{model['role'].replace('_', ' '):<22}{model['name']} requested {requested} -> "
                     f"{model['resolved_revision']}, {files} weight file(s) hashed")
    if record.get("feature_cache_fingerprint"):
        lines.append(f"{'feature cache':<22}{record['feature_cache_fingerprint']}")
    if record.get("transfer") == "none":
        lines.append(f"{'transfer':<22}none (no feature transfer)")
    elif record.get("transfer"):
        lines.append(f"{'transfer':<22}{record['transfer'].upper()} (beta {record.get('beta')})")
    terms = record.get("terms") and {**record["terms"], "transfer": None}  # the line above names the transfer
    if terms := terms_note(terms):  # distillation, unlabelled rows, the probe's accuracy
        lines.append(f"{'terms':<22}{terms.removeprefix('terms: ')}")
    metrics = record.get("metrics", {}).get("eval") or {}
    shown = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in metrics.items()
                      if k.removeprefix("eval_") in ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "mse",
                                                      "mae", "pearson", "spearman", "f1", "precision",
                                                      "recall"))
    lines.append(f"{'eval':<22}{shown or '-'}")
    for column, result in (metrics.get("eval_groups") or {}).items():
        worst = result["groups"].get(result.get("worst") or "", {})
        flagged = ", ".join(result.get("flagged") or []) or "none"
        lines.append(f"{'groups by ' + column:<22}{len(result['groups'])} groups, worst {result.get('worst')} "
                     f"{worst.get('accuracy', float('nan')):.4f}, flagged against the baseline: {flagged}")
    return lines


def card_summary(record: dict) -> dict:
    """What the card's Audit section shows (the file hashes are the ones known before the card was written)."""
    return {"link": AUDIT_NAME, "started": record.get("started"), "ended": record.get("ended"),
            "device": record.get("device"), "resumed_step": (record.get("resumed_from") or {}).get("step"),
            "weights": weights_hash(record), "files": len(record.get("files") or {}),
            "teachers": [(t["name"], t["resolved_revision"]) for t in record.get("teachers") or []]}
