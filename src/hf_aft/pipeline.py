"""One training run end to end, as `hf-aft train` runs it and as Python can call it (`train_student`): data ->
teacher features -> student -> (beta search) -> AFTTrainer -> output dir (student, scales, results, card) -> Hub.

`ScriptArguments` says what to train on; `AFTConfig` how; `PeftArguments` whether the student is a LoRA adapter."""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import datetime, timezone

import transformers

from .arguments import PeftArguments, ScriptArguments
from .audit import reseal_card
from .augmentation import check_copies
from .beta_search import check_search, resumable_args, save_beta_search, search_beta
from .card import beta_note, read_baseline, terms_note
from .claims import check_unchanged, claimed, tag_config
from .config import AFTConfig
from .data import load_labelled_splits
from .data_files import ONE_SPLIT, named_files
from .distillation import task_teacher_order
from .errors import AFTError
from .eval_overlap import say_eval_rows_in_training
from .features import read_teacher_infos
from .generation import check_generation
from .group_report import check_eval_comparisons
from .hub import push_run
from .hub_reach import check_can_push
from .metrics import METRICS_BY_PROBLEM_TYPE, compute_metrics_for, say_below_majority
from .option_checks import check_idle_options, check_pool_read, check_source_types
from .outputs import ClearCompleteAtStart, check_creatable, check_output_dir, drop_earlier_run, mark_complete
from .resume_check import record_rows, resumed_from, say_steps_lost, schedule_change
from .run_records import finish_run
from .student import check_student_source, fold_target_scale, load_student, tokenize_beside_features
from .targets import SINGLE
from .tokens import warn_unknown_tokens
from .trainer import AFTTrainer
from .training_rows import with_pool_features
from .unlabeled_data import (
    held_out_splits,
    load_unlabeled,
    mark_checked,
    pool_source,
    read_paths_as_images,
    suggest_pool_split,
)
from .validation_split import DEFAULT_VALIDATION_FRACTION, class_ids
from .word_features import check_run_options
from .words import say_cut_eval_words

logger = logging.getLogger(__name__)
BETA_SEARCH_RUNS = "beta_search_runs"  # the --beta auto candidates' checkpoints, removed once the final run is done


def _check_run(script_args: ScriptArguments, config: AFTConfig):
    """Everything that can be refused before any data is read; returns the baseline's results (or None)."""
    inputs = {"--model_name_or_path": script_args.model_name_or_path, "--dataset_name": script_args.dataset_name,
              "--unlabeled_dataset": script_args.unlabeled_dataset, "--teachers": config.teachers,
              "--distill_teacher": config.distill_teacher, "--baseline_dir": script_args.baseline_dir}
    check_source_types(inputs)
    check_output_dir(config.output_dir, script_args.overwrite_output_dir, config.resume_from_checkpoint,
                     can_resume=True, inputs=inputs, writes="run")
    if config.push_to_hub and not config.hub_model_id:
        raise AFTError("--push_to_hub needs --hub_model_id ORG/NAME (the Hub repo to create or update).")
    if config.push_to_hub:  # before training, not after it
        check_can_push(config.hub_model_id, f"run `hf-aft push {config.output_dir} --hub_model_id "
                       f"{config.hub_model_id}` after training")
    if script_args.problem_type not in (None, *METRICS_BY_PROBLEM_TYPE):
        raise AFTError(f"--problem_type {script_args.problem_type!r} is not a problem type hf-aft trains: choose "
                       f"one of {', '.join(METRICS_BY_PROBLEM_TYPE)}.")
    fraction = script_args.beta_validation_fraction
    for option, given in (("--beta_validation_split", script_args.beta_validation_split is not None),
                          ("--beta_validation_fraction", fraction != DEFAULT_VALIDATION_FRACTION)):
        if given and not script_args.beta_auto:  # a user naming validation data expects it to be used
            raise AFTError(f"{option} says where --beta auto chooses beta; this run has a fixed beta "
                           f"({config.beta:g}) and would not use it: drop {option}, or pass --beta auto.")
    check_idle_options(script_args, config)  # as hf-aft train does, for train_student's callers
    if script_args.beta_auto and config.resume_from_checkpoint:
        raise AFTError("--beta auto cannot resume a run: pass the beta it chose (beta_search.json, chosen_beta) as "
                       "--beta with --resume_from_checkpoint.")
    if script_args.unlabeled_dataset:
        check_pool_read(config)
    if script_args.baseline_dir:
        return read_baseline(script_args.baseline_dir, script_args.dataset_name)
    return None


def _load_pool_and_record_rows(script_args: ScriptArguments, config, splits):
    """--unlabeled_dataset's rows (none of the eval or validation split), or None; both sets recorded (record_rows)."""
    column = script_args.image_column or script_args.text_column
    record_rows("labeled_rows", splits.train, [column, script_args.label_column], config.resume_from_checkpoint)
    if not script_args.unlabeled_dataset:
        if config.needs_teacher_features():  # plain fine-tuning, the STL baseline, reads no pool by design
            suggest_pool_split(script_args.dataset_name, splits.unread)
        return None
    if script_args.image_column:
        read_paths_as_images(splits, column)
    held_out = {f"eval ({splits.eval_name})": splits.eval, f"validation ({splits.validation_name})": splits.validation,
                **held_out_splits(splits.others, script_args)}
    unlabeled = load_unlabeled(script_args.unlabeled_dataset, script_args.unlabeled_split, column,
                               script_args.label_column, splits.train, held_out)
    record_rows("unlabeled_pool", unlabeled, [column], config.resume_from_checkpoint)
    return unlabeled


def _prepare(split, labels, processor, script_args: ScriptArguments):
    """Class ids in `labels` (unlabelled rows: `labels` None); tokens beside the teacher features (images are
    preprocessed per batch instead)."""
    if split is None:
        return None
    split = labels.encode(split) if labels is not None else split
    # transformers' collators take a `label` or `label_ids` column for the labels: one that is not the label column
    # (--label_column names another) would replace them
    split = split.remove_columns([c for c in ("label", "label_ids") if c in split.column_names])
    if script_args.image_column is not None:
        return split
    return tokenize_beside_features(split, processor, script_args.text_column, script_args.max_length)


def _choose_beta(script_args, config, train_set, validation, load, processor, infos, peft_config, unlabeled):
    """Search beta; the chosen candidate's checkpoint (at half of the schedule) is where the final run resumes."""
    result = search_beta(lambda: load()[0], config, train_set, script_args.beta_validation_fraction,
                         checkpoint_dir=os.path.join(config.output_dir, BETA_SEARCH_RUNS),
                         validation_dataset=validation, processing_class=processor, teacher_infos=infos,
                         peft_config=peft_config, image_column=script_args.image_column, unlabeled_dataset=unlabeled,
                         text_column=script_args.text_column)
    result["validation_split"] = script_args.beta_validation_split
    config.beta = result["chosen_beta"]
    return result


def train_student(script_args: ScriptArguments, config: AFTConfig, peft_args: PeftArguments | None = None) -> dict:
    """Run one training job end to end (what `hf-aft train` runs) and return its summary: output dir, train and eval
    metrics, beta, scales, parameter counts, and the beta search and Hub commit when they ran.

    Raises:
        AFTError: bad input found before training (output dir, data, labels, teachers, student), or a failed push.
    """
    check_creatable(config.output_dir)  # before the claim creates it
    with claimed(config.output_dir if config.process_index == 0 else None, "train") as claim:
        return _train_student(script_args, config, peft_args, claim)


def _check_made_rows_and_targets(splits, script_args: ScriptArguments, config: AFTConfig) -> None:
    """Copies, generated texts and a task teacher's targets that cannot be made are refused before any teacher runs."""
    check_copies(splits.train, config.augment_copies, script_args.text_column, script_args.image_column)
    check_generation(splits.train, config, script_args.text_column, script_args.image_column)
    if config.distill == "logits" and config.distill_teacher and splits.labels.problem_type == SINGLE:
        task_teacher_order(config.distill_teacher, [str(name) for name in splits.labels.names],
                           images=script_args.image_column is not None)


def _check_beta_search(script_args: ScriptArguments, config: AFTConfig, splits, n_unlabeled: int) -> None:
    """Refuses a --beta auto search that cannot run before any model loads or teacher runs, and says where it will
    compare its candidates."""
    train_ids, validation_ids = (class_ids(splits.labels.encode(s), "labels") if s is not None else None
                                 for s in (splits.train, splits.validation))
    check_search(train_ids, config, script_args.beta_validation_fraction, validation_ids, splits.validation_name,
                 n_unlabeled)
    print(f"--beta auto compares candidates on the {splits.validation_name!r} split" if splits.validation_name
          else f"--beta auto holds out {script_args.beta_validation_fraction:.0%} of the training data to "
          "compare candidates on", flush=True)


def _train_student(script_args: ScriptArguments, config: AFTConfig, peft_args: PeftArguments | None, claim) -> dict:
    run = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "peft_args": peft_args,
           "claim": claim}
    baseline = _check_run(script_args, config)
    peft_config = (peft_args or PeftArguments()).lora_config()
    push, config.push_to_hub = config.push_to_hub, False  # the finished run is pushed once, at the end
    if config.world_size > 1:  # every process checks before any of them writes
        config.distributed_state.wait_for_everyone()
    splits = load_labelled_splits(script_args.dataset_name, script_args.dataset_config, script_args.train_split,
                                  script_args.eval_split, script_args.image_column or script_args.text_column,
                                  script_args.label_column, script_args.beta_validation_split, script_args.beta_auto,
                                  script_args.problem_type)
    check_run_options(script_args, config, splits.labels)  # token classification: --text_column is its words

    def load():
        transformers.set_seed(config.seed)  # --seed also decides the new head's initial weights
        return load_student(script_args.model_name_or_path, splits.labels, script_args.image_column)

    run["eval_rows_sha256"] = check_eval_comparisons(script_args, splits)
    say_eval_rows_in_training(splits.train, splits.eval, script_args.image_column or script_args.text_column,
                              images=script_args.image_column is not None,
                              names=(script_args.train_split, splits.eval_name or "eval"))
    script_args.eval_split = splits.eval_name  # the splits actually used (the card names them)
    script_args.beta_validation_split = splits.validation_name
    unlabeled = run["unlabeled_raw"] = _load_pool_and_record_rows(script_args, config, splits)
    _check_made_rows_and_targets(splits, script_args, config)
    if script_args.beta_auto:
        _check_beta_search(script_args, config, splits, len(unlabeled or ()))
    if splits.eval is None:
        way_out = ONE_SPLIT if named_files(script_args.dataset_name) else "pass --eval_split to name one"
        print("no evaluation split (test, validation, valid or eval) in the dataset: the student will not be "
              f"evaluated; {way_out}.", flush=True)
    check_student_source(script_args.model_name_or_path, script_args.image_column)  # before minutes of teacher passes
    train_set, infos = splits.train, None
    if config.needs_teacher_features(unlabeled is not None):
        extraction = time.perf_counter()
        train_set, unlabeled = with_pool_features(train_set, unlabeled, config, script_args.text_column,
                                                  script_args.image_column)
        infos = read_teacher_infos(train_set)
        run.update(features_fingerprint=train_set._fingerprint, extraction_seconds=time.perf_counter() - extraction)
    model, processor = load()
    train_set = _prepare(train_set, splits.labels, processor, script_args)
    warn_unknown_tokens(train_set, processor, logger)
    eval_set = _prepare(splits.eval, splits.labels, processor, script_args)
    say_cut_eval_words(eval_set, script_args.text_column)
    unlabeled = mark_checked(_prepare(unlabeled, None, processor, script_args))  # checked as loaded: not again
    run.update(splits=splits, train_set=train_set, eval_set=eval_set, unlabeled_set=unlabeled)
    beta_search = None
    if script_args.beta_auto:
        validation = _prepare(splits.validation, splits.labels, processor, script_args)
        beta_search = _choose_beta(script_args, config, train_set, validation, load, processor, infos, peft_config,
                                   unlabeled)
        model, _ = load()  # the final run resumes the chosen candidate (or, without a checkpoint, starts as it did)
        start = beta_search["budget"]["continued_steps"]
        print(f"--beta auto: the final run, beta {config.beta:g}, on all {len(train_set)} training examples, "
              + (f"continues the candidate from step {start}" if start else "starts from step 0"), flush=True)
    return _train_and_save(model, processor, config, train_set, eval_set, infos, peft_config, script_args,
                           baseline, beta_search, push, run)


def _clear_before_saving(output_dir: str, beta_search: dict | None) -> None:
    """The beta search's candidate runs and the earlier run's files this run did not write again go."""
    if beta_search is not None:
        shutil.rmtree(os.path.join(output_dir, BETA_SEARCH_RUNS), ignore_errors=True)
    if earlier := drop_earlier_run(output_dir):  # none may pass for this run's
        logger.warning(f"hf-aft: removed the {len(earlier)} files of the earlier run in {output_dir} before saving "
                       "this run's.")


def _evaluate(trainer, train_set, eval_set, labels) -> dict:
    """The final evaluation's metrics (saved as eval_results.json), with a warning when a single-label student is no
    better than answering the majority class."""
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    if labels.problem_type == SINGLE and trainer.is_world_process_zero():
        say_below_majority(metrics.get("eval_accuracy"), train_set["labels"], eval_set["labels"], labels.names)
    return metrics


def _train_and_save(model, processor, config, train_set, eval_set, infos, peft_config, script_args, baseline,
                    beta_search, push, run) -> dict:
    checkpoint = (beta_search or {}).get("checkpoint")
    args = resumable_args(config, beta_search["budget"]["final_run_steps"]) if checkpoint else config
    labels = run["splits"].labels  # RecordedMetrics keeps the last evaluation's predictions (group_report.py)
    run["metrics"] = compute_metrics_for(labels)
    trainer = AFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=processor, teacher_infos=infos, peft_config=peft_config,
                         image_column=script_args.image_column, compute_metrics=run["metrics"],
                         unlabeled_dataset=run["unlabeled_set"], text_column=script_args.text_column)
    tag_config(trainer.accelerator.unwrap_model(trainer.model))  # every config.json it saves names this run
    trainer.add_callback(ClearCompleteAtStart())  # not finished once it starts, until mark_complete below
    with say_steps_lost(trainer):
        result = trainer.train(resume_from_checkpoint=checkpoint or config.resume_from_checkpoint)
    if trainer.is_world_process_zero():
        _clear_before_saving(config.output_dir, beta_search)
    trainer.save_metrics("train", result.metrics)
    summary = {"output_dir": os.path.abspath(config.output_dir), "train": result.metrics, "beta": config.beta,
               "beta_note": beta_note(config, beta_search, trainer.terms_summary()),
               "terms_note": terms_note(trainer.terms_summary()),
               "terms": trainer.terms_summary(),
               "scales": trainer.scale_summary(), "is_main_process": trainer.is_world_process_zero(),
               "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
               "all_params": sum(p.numel() for p in trainer.model.parameters()),
               "schedule_note": None if checkpoint else schedule_change(config.resume_from_checkpoint,
                                                                        trainer.state.max_steps),
               "resumed_from": None if checkpoint else resumed_from(config.resume_from_checkpoint)}
    if eval_set is not None:
        summary["eval"] = _evaluate(trainer, train_set, eval_set, labels)
    if getattr(labels, "standardize", False):  # after the evaluation, whose metrics undo the standardisation
        fold_target_scale(trainer.accelerator.unwrap_model(trainer.model), labels.mean, labels.std)
    trainer.save_model()
    trainer.save_state()
    if beta_search is not None:
        if trainer.is_world_process_zero():
            save_beta_search(beta_search, config.output_dir)
        summary["beta_search"] = beta_search
    trainer.create_model_card(dataset_name=script_args.dataset_name, baseline_results=baseline,
                              beta_search=beta_search, eval_split=script_args.eval_split,
                              unlabeled_data=pool_source(script_args))
    if trainer.is_world_process_zero():  # recipe, cost report, audit record (the files' hashes); then the marker
        check_unchanged(run["claim"])  # nothing sealed below may be another run's
        summary.update(finish_run(trainer, script_args, config, run, summary))
        check_unchanged(run["claim"])
        mark_complete(config.output_dir)  # the last write: everything above is in the output dir
        if run["claim"] is not None:
            run["claim"].complete = True
    if push and trainer.is_world_process_zero():
        summary["hub_commit"] = push_run(config.output_dir, config.hub_model_id, token=config.hub_token,
                                         private=config.hub_private_repo, revision=config.hub_revision,
                                         before_upload=reseal_card)
    return summary
