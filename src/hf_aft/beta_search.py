"""`--beta auto`: choose beta on a validation split (the dataset's own, else one held out of the training data) by
successive halving along the final run's own schedule, and continue the winner as the final run: at most one run's
steps on top of that run.

Candidates: `DEFAULT_GRID` = (0, 0.1, 0.3, 1, 3, 10), the range where the benchmarks found the optimum (text 0.1-0.3,
images 1; docs/guides/choosing-beta.md); beta = 0 is plain fine-tuning (probe distillation alone when `distill` is
on, as by default). Each candidate is an `AFTTrainer` run on the training part with the final run's schedule (its
steps, warmup and learning-rate decay), stopped, checkpointed and scored on the validation split at two rungs,
`RUNGS` = 1/8 and 1/2 of the steps (successive halving: Jamieson and Talwalkar, AISTATS 2016; Li et al., MLSys 2020):
1. Rung 1: the default 0.1 (what a run without --beta auto uses) and plain fine-tuning first. A candidate is on the
   plateau while it does not beat always predicting the most frequent class by more than one standard error
   (`beta_choice.py`; predicting one class is the plateau). Unless both are, the other candidates train to rung 1
   too and `PROMOTED` (2) go on: the leader (the best validation accuracy; ties: lower validation cross-entropy) and a
   challenger, the next stronger transfer still in the race (the smallest larger beta not stalled, on the plateau or
   not; else the runner-up). Early in training a stronger transfer term slows the task loss, so rung 1 cannot judge it
   (vision, seed 2: beta 1 at 0.216 there against 0.352 for 0.3, 5.7 points above it at the end with fixed betas;
   digits, seed 1: 0.3 at chance there, 5 points above 0.1 at the end); rung 2 judges both. One grid step, not the
   largest beta in the race: on a 20-example validation split that put beta 10 within one standard error at rung 2, at
   a cost of 6.8 points. If both are on the plateau, a rung this early cannot rank anything (the pretrained text
   students leave it after 30-40% of training, docs/benchmarks.md; a ViT from scratch on 8x8 digits was at chance
   at 1/8): the two go on to rung 2 alone and, if they have left it there, the next stronger transfer
   (`PLATEAU_CANDIDATES`: 0.3) trains to rung 2 too; 1, 3 and 10, the betas the stall detector finds holding such
   students on their plateau, are not run.
2. Rung 2: the promoted candidates resume from their checkpoints to half of the steps.
3. The choice (`beta_choice.py`): the largest beta whose validation accuracy at rung 2 is within one standard error of
   the best candidate's (paired by example, McNemar), among those off the plateau; when none is, the default stays.
4. The final run resumes the chosen candidate's rung-2 checkpoint on the whole training set (a held-out split's both
   parts) to the end of the schedule (`search_beta(checkpoint_dir=...)`, as `hf-aft train` calls it). When even the
   default and plain fine-tuning are still on the plateau at rung 2, the default is kept and the final run starts
   from the beginning, as a fixed --beta 0.1 run: a run continued from there need not leave the plateau when the
   uninterrupted run does (the 1-layer text student: 0.614, the majority class, against 0.729).

Budget: 6 x 1/8 + 2 x 3/8, or 3 x 1/2 from a plateau at rung 1, = 1.5x the final run's steps, of which the winner's
first half is the final run's own: 1x on top of it (runs of at least 16 steps; shorter ones round the rungs up);
2 x 1/2 = 1x when the search stops on the plateau at rung 2.
A candidate whose `StallDetector` fires (task loss at the class prior under a dominating transfer term at rung 1; at
rung 2, still at the prior while beta * transfer is at least a tenth of it; callbacks.py) stops at once and is out.
Teacher features are computed once, before the split: every run reads one cache. Why not optuna's pruner:
docs/guides/choosing-beta.md.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers
from transformers import TrainerCallback

from .beta_choice import RULE, choose_beta, metric_of, on_plateau, rank_key, score_candidate
from .config import DEFAULT_BETA
from .dataset_types import check_one_split
from .errors import AFTError
from .features import with_teacher_features
from .metrics import compute_classification_metrics
from .targets import SINGLE, model_problem_type
from .trainer import AFTTrainer
from .unlabeled import epoch_length
from .validation_split import DEFAULT_VALIDATION_FRACTION, check_given, class_ids, held_out, split_validation

DEFAULT_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)
SEARCH_ORDER = (DEFAULT_BETA, 0.0, 0.3, 1.0, 3.0, 10.0)  # the default, plain fine-tuning, then stronger transfer
PLATEAU_CANDIDATES = 3  # from a plateau at rung 1: the default, plain fine-tuning and the next stronger beta
RUNGS = (1 / 8, 1 / 2)
PROMOTED = 2
MIN_STEPS = 4
BETA_SEARCH_NAME = "beta_search.json"


def check_search(labels: np.ndarray, args, fraction: float, validation_labels: np.ndarray | None = None,
                 validation_name: str = "validation", n_unlabeled: int = 0) -> None:
    """Everything `search_beta` would refuse that the class ids (of the training data, and of the validation split
    when the dataset has one), the number of unlabelled rows and the run's settings already show."""
    if args.transfer == "none":
        raise AFTError("--beta auto searches the weight of the transfer loss: use --transfer aft, kd or rkd.")
    if validation_labels is None:
        held_out(labels, fraction, args.seed)
    else:
        check_given(validation_labels, validation_name)
    steps = final_run_steps(args, epoch_length(len(labels), n_unlabeled, args.labeled_fraction))
    if steps < MIN_STEPS:
        raise AFTError(f"--beta auto stops candidates at 1/8 and 1/2 of the run's steps: it needs at least "
                       f"{MIN_STEPS} (this run has {steps}); train longer or give a fixed --beta.")


def final_run_steps(args, n_examples: int) -> int:
    """Optimizer steps of a run of `args` on `n_examples` rows per epoch (as `Trainer` counts them: max_steps, else
    epochs x ceil(batches per epoch / gradient accumulation)); with unlabelled rows, `unlabeled.epoch_length`."""
    if args.max_steps > 0:
        return int(args.max_steps)
    batches = math.ceil(n_examples / (args.train_batch_size * max(1, args.world_size)))
    per_epoch = max(1, batches // args.gradient_accumulation_steps)
    return max(1, math.ceil(args.num_train_epochs * per_epoch))


def rung_steps(final_steps: int) -> tuple[int, int]:
    """The steps of rung 1 and rung 2, rounded down so that 4 x rung 1 + rung 2 (the steps on top of the final run)
    stays within `final_steps` (from 16 steps on; at least 2 and 3 below that)."""
    first = max(2, int(RUNGS[0] * final_steps))
    return first, min(final_steps, max(first + 1, int(RUNGS[1] * final_steps)))


def resumable_args(args, final_steps: int):
    """A copy of `args` whose fractional logging/eval/save steps are the step counts the Trainer stores in a
    checkpoint's state (transformers' `TrainerState.compute_steps`): resuming compares the two and would warn of a
    mismatch that is not one."""
    args = copy.deepcopy(args)
    for name in ("logging_steps", "eval_steps", "save_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            setattr(args, name, math.ceil(final_steps * value))
    return args


class _StopAtRung(TrainerCallback):
    """Stops the candidate at `step` with a checkpoint, or at once without one when its stall detector fires."""

    def __init__(self, trainer, step: int):
        self.trainer, self.step = trainer, step

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.stall_detector.stalled_at is not None:
            control.should_training_stop = True
        elif state.global_step >= self.step:
            control.should_save = control.should_training_stop = True


class _Search:
    """What every candidate shares: the student, the final run's args and steps, the data, where checkpoints go."""

    def __init__(self, model_init, args, train_part, validation, n_final, checkpoint_dir, trainer_kwargs):
        self.model_init, self.args, self.trainer_kwargs = model_init, args, trainer_kwargs
        self.train_part, self.validation, self.checkpoint_dir = train_part, validation, checkpoint_dir
        self.final_steps = final_run_steps(args, n_final)  # the final run's examples: all the training data
        self.rungs = rung_steps(self.final_steps)
        self.candidate_steps = 0

    def trainer(self, beta: float) -> AFTTrainer:
        args = resumable_args(self.args, self.final_steps)
        args.beta, args.max_steps = beta, self.final_steps  # the final run's schedule, whatever the data size
        args.output_dir = os.path.join(self.checkpoint_dir, f"beta-{beta:g}")
        args.save_strategy = args.eval_strategy = "no"
        args.load_best_model_at_end = args.push_to_hub = args.save_only_model = False
        args.report_to = []
        transformers.set_seed(args.seed)  # every candidate starts from the same student
        model = self.model_init()
        single = model_problem_type(model) == SINGLE  # else: beta_choice scores it
        trainer = AFTTrainer(model=model, args=args, train_dataset=self.train_part, eval_dataset=self.validation,
                             compute_metrics=compute_classification_metrics if single else None,
                             **copy.copy(self.trainer_kwargs))
        detector = trainer.stall_detector  # its two checks fall on the two rungs
        detector.advice = f"--beta auto drops the candidate beta = {beta:g}"
        detector.window, detector.late_window = (step / self.final_steps for step in self.rungs)
        return trainer

    def advance(self, record: dict, rung: int) -> None:
        """Train the candidate of `record` (from its checkpoint, if any) to `rung` and score it there."""
        step = self.rungs[rung]
        print(f"--beta auto: beta {record['beta']:g} to step {step} of {self.final_steps} (rung {rung + 1}), on "
              f"{len(self.train_part)} examples", flush=True)
        trainer = self.trainer(record["beta"])
        trainer.add_callback(_StopAtRung(trainer, step))
        previous = record.pop("checkpoint", None)
        trainer.train(resume_from_checkpoint=previous)
        self.candidate_steps += trainer.state.global_step - record["steps"]
        record["steps"] = trainer.state.global_step
        _remove(trainer, previous)
        if trainer.stall_detector.stalled_at is not None:
            record.update(status="stalled", score=None)
        else:
            record["checkpoint"] = os.path.join(trainer.args.output_dir, f"checkpoint-{step}")
            record.update(score_candidate(trainer, self.validation), status=f"at rung {rung + 1}")
            if rung == 0:
                record["rung_score"] = record["score"]
        del trainer
        gc.collect()


def _remove(trainer, checkpoint: str | None) -> None:
    if checkpoint and trainer.is_world_process_zero():
        shutil.rmtree(checkpoint, ignore_errors=True)


def run_rungs(search: _Search) -> tuple[list[dict], str | None]:
    """Successive halving over `SEARCH_ORDER` (module docstring); returns the records and where the default and plain
    fine-tuning were found on the plateau: None, "rung 1", or "rung 2" (then nothing else was run)."""
    records = [{"beta": b, "status": "not run", "steps": 0, "rung_score": None, "score": None} for b in SEARCH_ORDER]
    first, rest = records[:2], records[2:]
    for record in first:
        search.advance(record, 0)
    if not on_plateau(first):
        for record in rest:
            search.advance(record, 0)
        _promote(promotions(records), search)
        for record in records:
            if record["status"] == "at rung 1":
                record["status"] = "stopped at rung 1"
        return records, None
    _promote(first, search)
    if on_plateau(first):
        for record in rest:
            record["status"] = "not run: on plateau at half of training"
        return records, "rung 2"
    _promote(rest[:PLATEAU_CANDIDATES - 2], search)
    for record in rest[PLATEAU_CANDIDATES - 2:]:
        record["status"] = "not run: on plateau at rung 1"
    return records, "rung 1"


def promotions(records: list[dict]) -> list[dict]:
    """Who goes on from rung 1: the leader (the best validation accuracy) and a challenger, the next stronger transfer
    still in the race (the smallest larger beta not stalled, even if still on the plateau): early in training a
    stronger transfer term slows the task loss, so rung 1 cannot judge it, and rung 2 judges both. Without one, the
    runner-up."""
    scored = sorted((r for r in records if r["score"] is not None), key=rank_key, reverse=True)
    if len(scored) <= PROMOTED:
        return scored
    leader, others = scored[0], scored[1:]
    stronger = [r for r in others if r["beta"] > leader["beta"]]  # the stalled have no score
    return [leader, min(stronger, key=lambda r: r["beta"]) if stronger else others[0]]


def _promote(records: list[dict], search: _Search) -> None:
    for record in records:
        if record["status"] != "stalled":
            search.advance(record, 1)


def _checked_inputs(model_init, train_dataset, validation_dataset, label_column: str | None) -> str:
    """The label column (default `labels`, else `label`), after checking `model_init` is a function, not a model
    (each candidate needs a fresh student), and each set one split."""
    if isinstance(model_init, (torch.nn.Module, type)) or not callable(model_init):  # a class needs its config
        what = f"the class {model_init.__name__}" if isinstance(model_init, type) else type(model_init).__name__
        raise AFTError(f"search_beta takes model_init, a function returning a fresh student (each candidate trains "
                       f"its own), not {what}: pass e.g. lambda: "
                       "AutoModelForSequenceClassification.from_pretrained(path, num_labels=...).")
    check_one_split(train_dataset, "search_beta's train_dataset", "train_dataset=data['train']")
    if validation_dataset is not None:
        check_one_split(validation_dataset, "search_beta's validation_dataset",
                        "validation_dataset=data['validation']")
    return label_column or ("labels" if "labels" in train_dataset.column_names else "label")


def search_beta(model_init, args, train_dataset, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                label_column: str | None = None, checkpoint_dir: str | None = None, validation_dataset=None,
                **trainer_kwargs) -> dict:
    """Choose beta as the module docstring says, on the training data minus a held-out validation split. Returns
    {"chosen_beta", "reason", "checkpoint", "metric", "default_beta", "candidates": [{"beta", "status", "steps",
    "rung_score" (validation accuracy at rung 1), "score" (at rung 2), "loss" (validation cross-entropy, nats),
    "predicted_classes", "above_majority", "wins_vs_best", "losses_vs_best", "within_one_se"}], "grid", "order",
    "plateau", "kept_default" (no candidate could be compared: the default, from the start),
    "budget": {"final_run_steps", "rung_steps", "candidate_steps", "continued_steps", "ratio", "extra"},
    "validation_fraction" (None when given), "validation_given", "n_train", "n_validation", "rule"}; `args.beta` is
    left alone. A candidate's status: at rung 2, stopped at rung 1, stalled, or not run.

    Args:
        model_init: returns a fresh student (called once per candidate run, after seeding with `args.seed`).
        args: the `AFTConfig` of the final run (its steps set the schedule); candidates copy it with their beta,
            without saving (but checkpoints) or pushing.
        train_dataset: tokenized (or an image column, with `image_column=` and the image processor as
            `processing_class=`), with the `teacher_features` column (or `args.teachers` set: the features are then
            extracted once here) and the class ids in `label_column` (default: `labels`, else `label`).
        checkpoint_dir: where the candidates' checkpoints go; the chosen one's rung-2 checkpoint stays there, as
            "checkpoint": continue it with `AFTTrainer(...).train(resume_from_checkpoint=...)` on the whole training
            set (the final run; `budget["extra"]`, the steps on top of it, is then at most 1). Without it, a
            temporary folder is used and removed ("checkpoint" is None: train the final run from the start).
        validation_dataset: the split to score candidates on (prepared as `train_dataset` is, without teacher
            features; candidates then train on all of `train_dataset`). Without it, `validation_fraction` of
            `train_dataset` is held out, stratified by label (the final run then resumes on all of it).
        trainer_kwargs: passed to every candidate's `AFTTrainer` (e.g. `processing_class`, `peft_config`).
    """
    label_column = _checked_inputs(model_init, train_dataset, validation_dataset, label_column)
    given = None if validation_dataset is None else class_ids(validation_dataset, label_column)
    unlabeled = trainer_kwargs.get("unlabeled_dataset")
    check_search(class_ids(train_dataset, label_column), args, validation_fraction, given,  # before any teacher runs
                 n_unlabeled=len(unlabeled or ()))
    train_dataset = with_teacher_features(train_dataset, args, trainer_kwargs.get("text_column", "text"),
                                          trainer_kwargs.get("image_column"))
    train_part, validation = ((train_dataset, validation_dataset) if validation_dataset is not None
                              else split_validation(train_dataset, validation_fraction, args.seed, label_column))
    with tempfile.TemporaryDirectory(prefix="hf_aft_beta_") as scratch:
        n_final = epoch_length(len(train_dataset), len(unlabeled or ()), args.labeled_fraction)  # the final run's
        search = _Search(model_init, args, train_part, validation, n_final, checkpoint_dir or scratch, trainer_kwargs)
        records, plateau = run_rungs(search)
        chosen, reason, winner = choose_beta(records)
        checkpoint = winner["checkpoint"] if winner is not None and checkpoint_dir else None
        for record in records:
            record.pop("checkpoint", None)
            record.pop("example_scores", None)
            folder = os.path.join(search.checkpoint_dir, f"beta-{record['beta']:g}")
            if args.should_save and (checkpoint is None or os.path.dirname(checkpoint) != folder):
                shutil.rmtree(folder, ignore_errors=True)  # only the chosen candidate's checkpoint stays
    continued = search.rungs[1] if checkpoint else 0
    budget = {"final_run_steps": search.final_steps, "rung_steps": list(search.rungs),
              "candidate_steps": search.candidate_steps, "continued_steps": continued,
              "ratio": search.candidate_steps / search.final_steps,
              "extra": (search.candidate_steps - continued) / search.final_steps}
    return {"chosen_beta": chosen, "reason": reason, "checkpoint": checkpoint, "metric": metric_of(records),
            "candidates": records, "grid": list(DEFAULT_GRID), "order": list(SEARCH_ORDER), "plateau": plateau,
            "kept_default": winner is None, "budget": budget,
            "validation_fraction": None if validation_dataset is not None else validation_fraction,
            "validation_given": validation_dataset is not None, "n_train": len(train_part),
            "n_validation": len(validation), "default_beta": DEFAULT_BETA, "rule": RULE}


def save_beta_search(result: dict, output_dir: str) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, BETA_SEARCH_NAME)
    with open(path, "w") as f:
        json.dump({k: v for k, v in result.items() if k != "checkpoint"}, f, indent=2)
    return path
