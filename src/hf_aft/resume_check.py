"""A resumed run trains as it began: every checkpoint gets `hf_aft_options.json`, the options that shape the loss or
the batches (transfer, beta, distillation, unlabelled rows, seed), and `--resume_from_checkpoint` with other values
is refused, since the model card would describe only the last part of the run. A data file edited in place is
caught by the sha256 of the rows as loaded, labelled and unlabelled (`record_rows`). A checkpoint without that file
(written before hf-aft recorded one) is resumed as before.

Both sides build the record with `effective_options`, so an option that has no effect (beta under `--transfer none`,
the distillation weight without distillation) never makes two runs differ."""

from __future__ import annotations

import contextvars
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import faults
from .errors import AFTError
from .feature_dataset import identity_text, teacher_identity
from .filesystems import write_atomically
from .student_peft import peft_settings
from .teachers.spec import revision_in_scheme_of

OPTIONS_NAME = "hf_aft_options.json"
# None where another option turns them off (beta: --transfer none, ...): that option is the difference to name.
DEPENDENT = {"beta", "kernel", "balance_teachers", "distill_weight", "distill_temperature", "distill_teacher",
             "distill_teacher_revision", "labeled_fraction", "generator", "unlabeled_split", "kernel_scope",
             "learn_scales", "scales_learning_rate", "student_feature_module", "student_feature_point", "max_length"}
FLAGS = {"student": "--model_name_or_path"}  # recorded keys that are not their flag's name
ROWS = {"labeled_rows": "labelled training", "unlabeled_pool": "unlabelled"}  # record_rows' keys, as said
# The --unlabeled_dataset and student of the command running now (the trainer sees rows and weights, not sources).
_sources = contextvars.ContextVar("hf_aft_run_sources", default=None)


def _source(name: str | None) -> str | None:
    """A data source as it names the same data from any folder: local paths made absolute (comma-separated files
    each), Hub ids as given."""
    if not name:
        return None
    return ",".join(os.path.abspath(part) if os.path.exists(part) else part for part in name.split(","))


def run_sources(script_args) -> dict:
    """Where the unlabelled rows and the student come from, and how long a text the student reads, as a checkpoint
    records them (the checkpoint's weights replace the student's, not its config: another student is another run)."""
    dataset = _source(script_args.unlabeled_dataset)
    return {"unlabeled_dataset": dataset, "unlabeled_split": script_args.unlabeled_split if dataset else None,
            "student": _source(script_args.model_name_or_path),
            "max_length": None if script_args.image_column else script_args.max_length}


@contextmanager
def recording_sources(script_args):
    """Within it, checkpoints record `script_args`' sources (`run_sources`; `hf-aft train` runs the pipeline in it)."""
    token = _sources.set(run_sources(script_args))
    try:
        yield
    finally:
        _sources.reset(token)


def effective_options(config, has_pool: bool) -> dict:
    """The options of `config` (an `AFTConfig`) that shape the loss or the batches, None where they have no effect
    (`has_pool`: the run has --unlabeled_dataset)."""
    distill = config.resolved_distill(has_pool)
    on, transfer = distill != "none", config.transfer != "none"
    mixed = has_pool or bool(config.augment_copies or config.generate_texts)
    return {"transfer": config.transfer, "beta": config.beta if transfer else None,
            "kernel": config.kernel if config.transfer == "aft" else None,
            "balance_teachers": config.balance_teachers if transfer else None, "distill": distill,
            "distill_weight": config.distill_weight if on else None,
            "distill_temperature": config.distill_temperature if on else None,
            "distill_teacher": config.distill_teacher if distill == "logits" else None,
            "labeled_fraction": config.labeled_fraction if mixed else None,
            "augment_copies": config.augment_copies, "generate_texts": config.generate_texts,
            "generator": config.generator if config.generate_texts else None, "seed": config.seed,
            **_optimizer_options(config)}


def _optimizer_options(config) -> dict:
    """What the checkpoint keeps whatever the command says, or what would make other batches: transformers restores
    the optimizer's state (its learning rates and weight decay) and the batch sampler's position; another batch shape
    or loss point would train another run. `--max_steps` / epochs may change (transformers' resume to train longer:
    `schedule_change` says what that does to the schedule)."""
    transfer, aft = config.transfer != "none", config.transfer == "aft"
    return {"learning_rate": config.learning_rate, "weight_decay": config.weight_decay,
            "optim": _plain(config.optim), "lr_scheduler_type": _plain(config.lr_scheduler_type),
            "warmup_steps": config.warmup_steps, "per_device_train_batch_size": config.per_device_train_batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "kernel_scope": _plain(config.kernel_scope) if config.transfer in ("aft", "rkd") else None,
            "learn_scales": config.learn_scales if aft else None,
            "scales_learning_rate": config.scales_learning_rate if transfer and (config.learn_scales or not aft)
            else None,
            "student_feature_module": config.student_feature_module if transfer else None,
            "student_feature_point": _plain(config.student_feature_point) if transfer else None}


def _plain(value):
    """An enum option (transformers' OptimizerNames, SchedulerType) as the string its flag takes."""
    return getattr(value, "value", value)


def command_options(script_args, config) -> dict:
    """What a checkpoint must have recorded for this command to resume it."""
    return {**effective_options(config, bool(script_args.unlabeled_dataset)), **run_sources(script_args)}


def trainer_options(trainer) -> dict:
    """What a checkpoint of `trainer` records: its options, the unlabelled data source of the command (when one runs
    the trainer) and how many unlabelled rows it mixed in."""
    rows, pool = trainer.rows, _sources.get()
    has_pool = bool(pool["unlabeled_dataset"]) if pool else rows.n_unlabeled > rows.n_augmented + rows.n_generated
    return {**effective_options(trainer.args, has_pool), **(pool or {}), **_teachers_of(rows),
            **_lora_of(trainer.model)}


def _lora_of(model) -> dict:
    """A PEFT student's adapter settings under their flags' names (another rank, alpha, dropout or targets would train
    another adapter, or fail to load); `use_peft` False for a plain student."""
    settings = peft_settings(model)
    if settings is None:
        return {"use_peft": False}
    config = next(iter(model.peft_config.values()))
    return {"use_peft": True, "lora_r": settings["r"], "lora_alpha": settings["lora_alpha"],
            "lora_dropout": getattr(config, "lora_dropout", None), "lora_target_modules": settings["target_modules"]}


def _teachers_of(rows) -> dict:
    """What the trainer's rows were made with: the unlabelled row count, the feature teachers and the task teacher
    (its weights as resolved: a folder retrained in place is another teacher)."""
    return {"unlabeled_rows": rows.n_unlabeled, "teacher_features": teacher_identity(rows.teacher_infos),
            "distill_teacher_revision": rows.distill_teacher_revision}



def read_options(checkpoint: str) -> dict | None:
    """A checkpoint's recorded options; None for one without them (older, or unreadable: the resume's own file checks
    name a damaged file)."""
    try:
        with open(os.path.join(checkpoint, OPTIONS_NAME)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _saved_steps(checkpoint: str | None) -> tuple[int | None, int | None]:
    """(max_steps planned, global_step reached) in a checkpoint's trainer_state.json; Nones when it has none."""
    try:
        with open(os.path.join(checkpoint, "trainer_state.json")) as f:
            state = json.load(f)
        return int(state["max_steps"]), int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def resumed_from(checkpoint: str | None) -> dict | None:
    """What the audit records of a resumed run: the checkpoint (absolute path) and the step it had reached; None
    when not resumed."""
    if not checkpoint:
        return None
    return {"checkpoint": os.path.abspath(str(checkpoint)), "step": _saved_steps(checkpoint)[1]}


def check_resume_steps(checkpoint: str, max_steps: int) -> None:
    """Refuse a `--max_steps` that `checkpoint` has reached already: the run would train a step past it anyway."""
    step = _saved_steps(checkpoint)[1]
    if step is not None and 0 < max_steps <= step:
        raise AFTError(f"cannot resume from {checkpoint!r} with --max_steps {max_steps}: it is at step {step} "
                       f"already: give a --max_steps above {step} to train on, or start again without "
                       "--resume_from_checkpoint.")


def schedule_change(checkpoint: str | None, max_steps: int) -> str | None:
    """What a recipe cannot rerun: `checkpoint` was saved by a run planned for another number of optimizer steps than
    `max_steps`, the resumed run's. transformers restores the scheduler's step but builds its learning-rate schedule
    from the new plan, so the rate jumps at the resume and a rerun of the recipe follows the new plan throughout.
    None when not resumed, or when the plans agree (or the checkpoint's trainer_state.json is unreadable)."""
    planned, step = _saved_steps(checkpoint)
    if planned is None or planned == max_steps:
        return None
    return (f"resumed at step {step} from {checkpoint}, saved by a run planned for {planned} steps: the learning "
            f"rate followed that plan until then and the plan of {max_steps} steps after, so a rerun of this recipe "
            f"(max_steps {max_steps} throughout) trains another student")


def record_rows(key: str, rows, columns: list[str], checkpoint: str | None) -> None:
    """The command's `rows` as loaded under `key` (`labeled_rows`: the training split; `unlabeled_pool`): their count
    and the sha256 of their `columns` (`group_report.rows_sha256`). Checkpoints record it, and resuming `checkpoint`
    with other rows under the same names (a data file edited in place, another dataset) is refused."""
    from .group_report import rows_sha256

    record = {key: [len(rows), rows_sha256(rows, [c for c in columns if c in rows.column_names])]}
    sources = _sources.get()
    if sources is not None:
        sources.update(record)
    if checkpoint:
        check_resume_options(checkpoint, record)


def _shown(key: str, value) -> str:
    if key == "unlabeled_rows":  # counted, not a flag
        return f"{value} unlabelled rows"
    if key == "distill_teacher_revision":
        return f"the task teacher (--distill_teacher) at revision {value}"
    if key == "teacher_features":
        return "teacher features of " + ("; ".join(identity_text(*teacher) for teacher in value) or "no teacher")
    if key in ROWS:  # the rows themselves: a file edited since names the same source
        return f"{value[0]} {ROWS[key]} rows of sha256 {value[1][:12]}..."
    return FLAGS.get(key, f"--{key}") + " " + ("none" if value is None else str(value).lower()
                                               if isinstance(value, bool) else f"{value}")


def check_resume_options(checkpoint: str, options: dict) -> None:
    """Refuse to resume `checkpoint` with `options` that differ from those it recorded (each option it recorded)."""
    saved = read_options(checkpoint)
    if saved is None:
        return
    differ = [key for key, value in options.items() if key in saved and saved[key] != value
              and not (key in DEPENDENT and None in (value, saved[key]))]
    if not differ:
        return
    then = ", ".join(_shown(key, saved[key]) for key in differ)
    now = ", ".join(_shown(key, options[key]) for key in differ)
    raise AFTError(f"cannot resume from {checkpoint!r}: it was saved by a run with {then}, and this command has "
                   f"{now} (a resumed run must train as it began): resume with the checkpoint's values, or start "
                   "again without --resume_from_checkpoint.")


def _write(folder: str, record: dict) -> None:
    write_atomically(os.path.join(folder, OPTIONS_NAME), json.dumps(record, indent=2))


class OptionsRecord(TrainerCallback):
    """Writes `hf_aft_options.json` into each checkpoint of `trainer` and, when the trainer resumes
    `args.resume_from_checkpoint`, refuses unlabelled data of another size than that checkpoint's."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            _write(folder, trainer_options(self.trainer))

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint = args.resume_from_checkpoint
        if isinstance(checkpoint, str) and state.global_step > 0:
            check_resumed_trainer(checkpoint, self.trainer)
            if state.is_world_process_zero:  # transformers says it at info level only
                print(f"resuming from {checkpoint}: step {state.global_step} of {state.max_steps}", flush=True)


class _DropStepRatioMismatch(logging.Filter):
    """transformers compares a resumed run's logging/eval/save steps with the checkpoint's, where hf-aft's default
    ratio (`logging_steps` 0.1) is stored as a count (0.1 != 30) on every resume: that warning, when it names only
    those steps, says nothing (this module refuses options that change the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = str(record.msg).split("\n\t")
        return not (lines[0].startswith("Warning: The following arguments do not match") and all(
            line.startswith(("logging_steps:", "eval_steps:", "save_steps:")) for line in lines[1:]))


logging.getLogger("transformers.trainer_utils").addFilter(_DropStepRatioMismatch())


def check_resumed_trainer(checkpoint: str, trainer) -> None:
    """The trainer's options that shape the loss or the batches (`AFTConfig`: beta, distillation, optimizer...), its
    unlabelled row count, teacher features and task teacher (`training_rows.TrainingRows`) are the checkpoint's, in
    the Python API as on the command line: checked before its transfer state loads, whose shapes follow the teachers'
    widths (a teacher of another width failed there with a state_dict message, not named as a change of teacher)."""
    options = trainer_options(trainer)
    saved = read_options(checkpoint) or {}
    check_resume_options(checkpoint, {**options, **_as_saved(saved, options, trainer.rows.teacher_infos,
                                                             trainer.args.distill_teacher)})


def _as_saved(saved: dict, options: dict, infos, distill_teacher: str | None) -> dict:
    """The command's teacher revisions as the checkpoint spells them: one saved by an earlier hf-aft holds that
    version's content hash of a local teacher, computed again here (`spec.revision_in_scheme_of`), so an unchanged
    teacher resumes."""
    kept, now = saved.get("teacher_features"), options["teacher_features"]
    changed = {}
    if isinstance(kept, list) and len(kept) == len(now) == len(infos or []):
        changed["teacher_features"] = [
            [revision_in_scheme_of(old[0] if isinstance(old, list) and old else None, new[0], info.name), *new[1:]]
            for old, new, info in zip(kept, now, infos, strict=True)]
    if options.get("distill_teacher_revision") and distill_teacher:
        changed["distill_teacher_revision"] = revision_in_scheme_of(
            saved.get("distill_teacher_revision"), options["distill_teacher_revision"], distill_teacher,
            "distill teacher")
    return changed


@contextmanager
def say_steps_lost(trainer):
    """An interrupt after some training steps with no checkpoint saved: the interrupt line says those steps are not
    kept (a rerun reuses the teacher features and trains from step 0) and how to keep checkpoints next time."""
    try:
        yield
    except KeyboardInterrupt:
        steps = trainer.state.global_step
        if steps and not any(Path(trainer.args.output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*/trainer_state.json")):
            faults.lost.append(f"the {steps} training steps done (no checkpoint was saved: a rerun trains from step "
                               "0; --save_strategy steps --save_steps N keeps checkpoints to resume from)")
        raise
