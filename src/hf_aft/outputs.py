"""What a run writes beside the student in its output dir, and reads back: the transfer loss's learned state
(`transfer_state.safetensors`: AFT's scale logits or KD's projection, with the teachers' provenance in its metadata)
and `transfer_summary.json` (teachers, beta, per-teacher scale summary). The student itself is a plain transformers
model saved by `Trainer`."""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import zipfile

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .claims import CLAIM_NAME, RUN_ID_KEY, carried_run_ids, current_run_id, files_written, stamped
from .errors import AFTError, first_line, warn_once
from .filesystems import write_atomically
from .finished_marker import COMPLETE_NAME, SET_ASIDE_NAME, drop_earlier_files, mark_changed, marker_record, set_aside

logger = logging.getLogger(__name__)

TRANSFER_STATE_NAME = "transfer_state.safetensors"
SCALES_PLOT_NAME = "scales.png"
CARD_INPUTS_NAME = "model_card.json"  # the card's facts (card.py), read back for the class names of a PEFT run
TRANSFER_SUMMARY_NAME = "transfer_summary.json"


def save_transfer_files(output_dir: str, transfer_loss, summary: dict) -> None:
    """`transfer_state.safetensors`, the loss's parameters (nothing for RKD, which has none) with the transfer and the
    teachers in its metadata, and `transfer_summary.json` (`summary`: transfer, beta, teachers, scales, ...)."""
    state = {k: v.detach().cpu().contiguous() for k, v in transfer_loss.state_dict().items()} if transfer_loss else {}
    summary = stamped(summary)
    if state:
        metadata = {"transfer": summary["transfer"], "teachers": json.dumps(summary["teachers"])}
        if "run_id" in summary:
            metadata[RUN_ID_KEY] = summary["run_id"]
        save_file(state, os.path.join(output_dir, TRANSFER_STATE_NAME), metadata=metadata)
    with open(os.path.join(output_dir, TRANSFER_SUMMARY_NAME), "w") as f:
        json.dump(summary, f, indent=2)


def share_like_other_files(folder: str) -> None:
    """Give the `*.safetensors` files in `folder` the mode any new file gets (0666 minus the umask, e.g. 0644), as
    config.json has: safetensors 0.8 writes through a temporary file created 0600 (safetensors#782; fix pending in
    #789), which leaves a student unreadable by another user, such as the account or container that serves it."""
    os.umask(mask := os.umask(0))  # read, and put back
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            os.chmod(os.path.join(folder, name), 0o666 & ~mask)


def check_transfer_state_saved(checkpoint: str) -> str:
    """The path of the checkpoint's `transfer_state.safetensors`, which an AFT or KD run resumes from.

    Raises:
        AFTError: it is missing (a checkpoint not written by hf-aft, or by an RKD / plain run)."""
    path = os.path.join(checkpoint, TRANSFER_STATE_NAME)
    if not os.path.exists(path):
        raise AFTError(f"cannot resume exactly: {path!r} is missing (the learned scales or projection of the "
                       "transfer loss): resume from a checkpoint written by hf-aft, or start again without "
                       "--resume_from_checkpoint.")
    return path


def load_transfer_state(checkpoint: str, transfer_loss) -> None:
    """Restore the loss's parameters from a checkpoint (read on the CPU and copied onto the parameters' device: a
    process's device name such as "cpu:0" is no device safetensors takes); a checkpoint without them (or with a
    damaged file) is one AFTError naming the file, never a silent restart of the scales."""
    if not transfer_loss.state_dict():
        return
    path = check_transfer_state_saved(checkpoint)
    try:
        transfer_loss.load_state_dict(load_file(path))
    except (SafetensorError, RuntimeError, OSError) as error:
        saved = _saved_transfer(path)
        if saved and saved != getattr(transfer_loss, "transfer", None):
            raise AFTError(f"cannot resume from {checkpoint!r}: it was saved by a --transfer {saved} run: resume with "
                           f"--transfer {saved}, or start again without --resume_from_checkpoint.") from error
        raise AFTError(f"cannot resume from {path!r}: {first_line(error)}. Use another checkpoint.") from error


def _saved_transfer(path: str) -> str | None:
    """The --transfer recorded in a `transfer_state.safetensors` (None: unreadable or not recorded)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return (f.metadata() or {}).get("transfer")
    except (SafetensorError, OSError):
        return None


def check_is_checkpoint(checkpoint: str) -> None:
    """`checkpoint` is a folder Trainer saved (it holds `trainer_state.json`) and not an output dir holding
    checkpoints (its own trainer_state.json is the finished run's): one AFTError naming it otherwise, with the output
    dir's last checkpoint as the way out, before any model or teacher loads."""
    if not os.path.isdir(checkpoint):
        raise AFTError(f"checkpoint {checkpoint!r} does not exist: give a checkpoint-* folder of an earlier run's "
                       "output dir.")
    steps = [name for name in os.listdir(checkpoint)
             if name.startswith("checkpoint-") and name[11:].isdigit()
             and os.path.isfile(os.path.join(checkpoint, name, "trainer_state.json"))]
    if not steps and os.path.isfile(os.path.join(checkpoint, "trainer_state.json")):
        return
    what = "an output dir" if steps else "not a checkpoint (it has no trainer_state.json)"
    last = f": its last is {os.path.join(checkpoint, max(steps, key=lambda n: int(n[11:])))!r}" if steps else ""
    cut = os.path.basename(os.path.normpath(checkpoint)).startswith("checkpoint-") and not steps
    cut = (", or start again with --overwrite_output_dir: this one was cut off while being written (Trainer writes "
           "trainer_state.json last)") if cut else ""
    raise AFTError(f"{checkpoint!r} is {what}: give a checkpoint-* folder of an earlier run's output dir{last}{cut}.")


def check_checkpoint_files(checkpoint: str) -> None:
    """Before resuming: every weights, optimizer, scheduler and state file of the checkpoint opens (a truncated
    safetensors header, a torch zip archive without its directory, a JSON cut short), so that a damaged file is one
    AFTError naming it instead of a traceback from deep inside Trainer; and it is a checkpoint."""
    from safetensors import safe_open

    check_is_checkpoint(checkpoint)
    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        try:
            if name.endswith(".safetensors"):
                with safe_open(path, framework="pt"):
                    pass
            elif name.endswith((".pt", ".pth", ".bin")):
                with open(path, "rb") as f:
                    zipped = f.read(2) == b"PK"  # torch.save's zip format (older pickles are left to torch)
                if zipped:
                    zipfile.ZipFile(path).close()
            elif name.endswith(".json"):
                with open(path) as f:
                    json.load(f)
        except (SafetensorError, zipfile.BadZipFile, ValueError, OSError) as error:
            raise AFTError(f"cannot resume from {checkpoint!r}: {name!r} is damaged ({first_line(error)}). Use "
                           "another checkpoint, or start again without --resume_from_checkpoint.") from error


def reload_renamed_weights(checkpoint: str, model) -> bool:
    """After `Trainer` resumed from `checkpoint`: if the student's weights file uses other key names than the model
    (transformers 5 saves e.g. ViT under its original names, and Trainer's resume loads the file as is, so those
    weights silently stay at their initial values: transformers issues #43701 and #48805), load it again through
    `from_pretrained`, which renames them. Returns whether it did. PEFT adapters are left to Trainer."""
    from safetensors import safe_open
    from transformers import PreTrainedModel

    path = os.path.join(checkpoint, "model.safetensors")
    if not isinstance(model, PreTrainedModel) or not os.path.exists(path):
        return False
    with safe_open(path, framework="pt") as f:
        saved = set(f.keys())
    if saved <= set(model.state_dict()):
        return False  # every saved key is a key of the model: Trainer loaded it (tied weights may be left out)
    reloaded = type(model).from_pretrained(checkpoint, config=model.config)
    model.load_state_dict(reloaded.state_dict())
    warn_once(logger, f"hf-aft: the checkpoint names {type(model).__name__}'s weights differently from the model "
                      "(transformers saves it under its original key names): loaded through from_pretrained.")
    return True


def restore_after_resume(checkpoint: str, model, transfer_loss=None) -> None:
    """What `Trainer` leaves out when it loads `checkpoint`: weights saved under other key names, and the transfer
    loss's state."""
    reload_renamed_weights(checkpoint, model)
    if transfer_loss is not None:
        load_transfer_state(checkpoint, transfer_loss)


def mark_complete(output_dir: str) -> None:
    """The last write of a run: `hf_aft_complete.json`, listing the files the run wrote (`files_written`). Written
    atomically, after everything else, so a dir without it is a run that stopped (or failed) before the end."""
    record = stamped(marker_record(output_dir, files_written(output_dir)))
    write_atomically(os.path.join(output_dir, COMPLETE_NAME), json.dumps(record, indent=2))


def clear_complete(output_dir: str) -> None:
    """At the start of a run into an existing dir (--overwrite_output_dir, --resume_from_checkpoint): it is not
    finished any more until this run marks it (set aside: a failure that changed none of its files puts it back)."""
    set_aside(output_dir)


class ClearCompleteAtStart(TrainerCallback):
    """`clear_complete` when training starts: after a resumed checkpoint is checked and loaded, so that a refused
    resume (other teachers, a damaged file) leaves a finished run's marker where it was. A run that starts from step
    0 in a dir that holds files (--overwrite_output_dir) also removes the earlier run's checkpoints: they would be
    taken for this run's (`--resume_from_checkpoint OUTPUT_DIR` resumes the newest)."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            clear_complete(args.output_dir)
            if state.global_step == 0:
                clear_earlier_checkpoints(args.output_dir)


def drop_earlier_run(output_dir: str) -> list[str]:
    """Once a run into a folder that held another's files has trained (before it saves anything): remove that run's
    files it has not written again, so that none passes for this run's: those a finished run's marker listed
    (`finished_marker.drop_earlier_files`), and those that name another run (a run killed before its marker: its
    transfer state, summaries), with the scales plot drawn from its state. Returns their names."""
    removed = drop_earlier_files(output_dir)
    for name, run_id in carried_run_ids(output_dir).items():
        if run_id != current_run_id():
            os.remove(os.path.join(output_dir, name))
            removed.append(name)
    if TRANSFER_STATE_NAME in removed and os.path.exists(plot := os.path.join(output_dir, SCALES_PLOT_NAME)):
        os.remove(plot)
        removed.append(SCALES_PLOT_NAME)
    return removed


def clear_earlier_checkpoints(output_dir: str) -> None:
    earlier = sorted(glob.glob(os.path.join(glob.escape(output_dir), f"{PREFIX_CHECKPOINT_DIR}-*")))
    for folder in earlier:
        shutil.rmtree(folder)
    if earlier:
        mark_changed(output_dir)  # an interrupt now must not call the earlier run kept as it was
        logger.warning("hf-aft: --overwrite_output_dir: removed the earlier run's %s from %s.",
                       ", ".join(os.path.basename(f) for f in earlier), output_dir)


def check_complete(output_dir: str) -> None:
    """An output dir that holds a student was finished by `hf-aft train` (what `hf-aft push` publishes), and one no
    run wrote (a model saved with save_pretrained) is named as such; a folder without any student is left to the
    push's own checks."""
    names = set(os.listdir(output_dir)) if os.path.isdir(output_dir) else set()
    if names & {"config.json", "adapter_config.json"} and COMPLETE_NAME not in names:
        if not names & RUN_TRACES and not any(n.startswith(f"{PREFIX_CHECKPOINT_DIR}-") for n in names):
            raise AFTError(f"{output_dir!r} is not an hf-aft run folder (a model folder no run wrote: no "
                           f"{COMPLETE_NAME}, recipe.yaml or training state): give the output dir of `hf-aft train`.")
        raise AFTError(f"{output_dir!r} is not a finished hf-aft train run (no {COMPLETE_NAME}: the run stopped or "
                       "failed before the end): finish it with --resume_from_checkpoint, or train again.")


RUN_TRACES = {CLAIM_NAME, SET_ASIDE_NAME, "recipe.yaml", "audit.json", TRANSFER_SUMMARY_NAME, TRANSFER_STATE_NAME,
              CARD_INPUTS_NAME, "trainer_state.json", "training_args.bin"}  # what a run leaves beside the student
FEATURES_FILE = "dataset_dict.json"  # `hf-aft features` saves a DatasetDict: `hf-aft push` takes such a folder for one
RUN_FILES = (COMPLETE_NAME, SET_ASIDE_NAME, "config.json", "adapter_config.json", "trainer_state.json",
             TRANSFER_SUMMARY_NAME, "audit.json")


def held_outputs(folder: str) -> dict[str, str]:
    """What `folder` holds of the two outputs `hf-aft push` tells apart: {"run": a file of a training run or model
    (its marker, config, a checkpoint), "features": the `hf-aft features` folder's dataset_dict.json}."""
    names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    run = [n for n in RUN_FILES if n in names] + sorted(n for n in names if n.startswith(f"{PREFIX_CHECKPOINT_DIR}-"))
    saved = [n for n in (FEATURES_FILE, "state.json") if n in names and (n == FEATURES_FILE or "dataset_info.json" in
                                                                          names)]  # a DatasetDict, or one split
    return {**({"run": run[0]} if run else {}), **({"features": saved[0]} if saved else {})}


def check_output_kind(output_dir: str, writes: str, option: str = "--output_dir") -> None:
    """A student (`writes` "run": hf-aft train or student) and features ("features") each get their own output dir,
    even with --overwrite_output_dir: neither removes the other's files, and `hf-aft push` would take the mixed folder
    for features, uploading the model with them to a dataset repo."""
    held = held_outputs(output_dir)
    if writes == "features" and "run" in held:
        raise AFTError(f"{option} {output_dir!r} holds a training run or model ({held['run']}): features saved "
                       "into it would be pushed with it as one dataset (hf-aft push), even with "
                       f"--overwrite_output_dir: give the features their own {option}.")
    if writes == "run" and "features" in held:
        raise AFTError(f"{option} {output_dir!r} holds a saved dataset ({held['features']}: save_to_disk, hf-aft "
                       "features): "
                       "a student written into it would be pushed as part of it, to a dataset repo (hf-aft push), "
                       f"even with --overwrite_output_dir: give the student its own {option}.")


def check_creatable(path: str, flag: str = "--output_dir") -> None:
    """A folder that exists, or can be created: its nearest existing parent is a writable folder on a filesystem that
    holds files (not /proc or /sys, where `os.access` lets root pass and mkdir then fails; nothing is created here).
    """
    from .filesystems import PSEUDO_FILESYSTEMS, filesystem_of, nearest_existing

    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise AFTError(f"{flag} {path!r} is a file: choose a folder.")
    parent = nearest_existing(path)
    done = "written in" if parent == path else "created"
    if not os.path.isdir(parent):
        raise AFTError(f"{flag} {path!r} cannot be created: {parent!r} is a file, not a folder.")
    kind, read_only = filesystem_of(parent) or ("", False)
    if kind in PSEUDO_FILESYSTEMS:
        raise AFTError(f"{flag} {path!r} cannot be {done}: {parent!r} is on the kernel's {kind} filesystem, which "
                       "holds no folders of files: choose a folder on a disk.")
    if read_only:
        raise AFTError(f"{flag} {path!r} cannot be {done}: {parent!r} is on a read-only filesystem: choose a "
                       "writable folder.")
    if parent != path and not os.access(parent, os.W_OK | os.X_OK):
        raise AFTError(f"{flag} {path!r} cannot be created: no permission to write in {parent!r}.")


def _inside(path: str, folder: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder).rstrip(os.sep) + os.sep)


DATA_FLAGS = ("--dataset_name", "--unlabeled_dataset")  # a data folder lists its files: a run inside it joins them


def check_apart(output_dir: str, inputs: dict, option: str = "--output_dir") -> None:
    """`output_dir` is no local input of the command, nor inside a data folder it reads, nor holds one (`inputs`: flag
    -> a path, a list of them, comma-separated data files, a Hub id or None): writing there would overwrite or join
    what it reads (`datasets` cannot save a dataset over the folder it was loaded from; a data-files folder would take
    the run's JSON files for data; --overwrite_output_dir removes an earlier run's files)."""
    out = os.path.realpath(os.path.expanduser(output_dir))
    for flag, given in inputs.items():
        for value in ([given] if isinstance(given, str) else given or []):
            for part in filter(os.path.exists, map(os.path.expanduser, value.split(","))):
                inside = flag in DATA_FLAGS and os.path.isdir(part) and _inside(out, part)
                where = "the folder of" if os.path.realpath(part) == out else "inside" if inside else None
                if where:
                    raise AFTError(f"{option} {output_dir!r} is {where} {flag} {part!r}, which this command reads: "
                                   "choose a folder outside it.")
                if _inside(part, out):  # the run's files, or --overwrite_output_dir's removals, would change it
                    raise AFTError(f"{flag} {part!r} is inside {option} {output_dir!r}, which this command writes "
                                   f"into: move it out of that folder, or choose another {option}.")


def check_output_dir(output_dir: str, overwrite: bool | None = None, resume: str | None = None,
                     can_resume: bool = False, option: str = "--output_dir", inputs: dict | None = None,
                     writes: str | None = None) -> None:
    """An output dir is a folder that holds nothing yet but this command's claim (or `overwrite`, or the run whose
    checkpoint `resume` is), apart from the command's `inputs` (`check_apart`), and, for a run or features
    (`writes`), not holding the other (`check_output_kind`). `overwrite` None: the command has no
    --overwrite_output_dir, so the refusal does not offer it."""
    if output_dir:
        check_creatable(output_dir, option)  # a folder, or one that can be created
        check_apart(output_dir, inputs or {}, option)
        if writes:  # before the refusal of a folder that holds files, which would offer --overwrite_output_dir
            check_output_kind(output_dir, writes, option)
    held = set(os.listdir(output_dir)) - {CLAIM_NAME} if output_dir and os.path.isdir(output_dir) else set()
    if held and resume and not overwrite and not _inside(resume, output_dir):
        raise AFTError(f"{option} {output_dir!r} already holds files and {resume!r} is not one of its checkpoints: "
                       f"resume into the checkpoint's own output dir ({os.path.dirname(os.path.abspath(resume))!r}) "
                       "or a new or empty folder, or pass --overwrite_output_dir.")
    if held and not (overwrite or resume):
        ways = ["choose another (a new or empty folder)"]
        ways += ["pass --overwrite_output_dir"] if overwrite is not None else []
        ways += ["--resume_from_checkpoint to continue a run"] if can_resume else []
        raise AFTError(f"{option} {output_dir!r} already holds files: {', or '.join(ways)}.")
