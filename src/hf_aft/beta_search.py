"""`--beta auto`: choose beta on a validation split held out of the training data, for at most one training run's
steps, never leaving the default beta on noise.

Search (optuna, https://optuna.readthedocs.io; the driver of transformers' `Trainer.hyperparameter_search` too): one
trial per candidate beta of `DEFAULT_GRID` = (0, 0.1, 0.3, 1, 3, 10), the range where the benchmarks found the optimum
(text 0.1-0.3, images 1; README, "Choosing beta"), run in `SEARCH_ORDER`: first the incumbent, `DEFAULT_BETA` (0.1,
what a run without `--beta auto` uses), then beta = 0 (plain fine-tuning); both are always trained to the end of their
schedule and never pruned. Then from the middle of the range outwards (1, 0.3, 3, 10), so that a strong bar is set
early and the extremes are pruned cheaply. Each trial is an `AFTTrainer` run on the training part with its own schedule
of `TRIAL_FRACTION` (1/4) of the final run's optimizer steps; at a third of it (`REDUCTION_FACTOR` 3) its validation
accuracy goes to `trial.report`, and optuna's `SuccessiveHalvingPruner` (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020) stops it unless it is among the best so far at that point (top 1/3). A trial whose
`StallDetector` early check fires (task loss at the class prior while beta * transfer dominates, callbacks.py) is
pruned at once. Budget: the steps of all trials are counted against the final run's steps (`budget` in
beta_search.json: candidate steps / final-run steps); a trial stops when the total would pass 1x, and candidates are
skipped once too little is left. When the incumbent and beta = 0 both end their trials predicting a single class for
every validation example, the trials are too short for this student to leave its initial plateau (measured on the
pretrained text students, README): no candidate could be told apart, so the search stops there and keeps the incumbent,
spending half of the budget.

Choice (the noise rule): among the trials trained to the end, another beta (0 included) replaces the incumbent only if
it beats it on the same validation examples by more than the standard error of the paired difference. With w the
examples it gets right and the incumbent wrong, and l the reverse, the difference of accuracies is (w - l) / n and its
standard error under "no difference" is sqrt(w + l) / n (McNemar's test, one standard error: a one-sided z > 1). Among
the betas that pass, the highest validation accuracy wins (ties, which the vision benchmark met between 0.3 and 1: the
lower validation cross-entropy, then the smaller beta); if none passes, the incumbent is kept. Why the default and not
beta = 0 is the incumbent: on every suite measured, beta = 0.1 was within the seed spread of plain fine-tuning (README,
"Choosing beta"), while a validation split of a few hundred examples cannot resolve the one-point gains it brings on
text; beta = 0 still wins whenever the default clearly hurts.
Teacher features are computed once, before the split, so every candidate and the final run read the same cache.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import tempfile

import numpy as np
import optuna
import torch
import transformers
from transformers import TrainerCallback

from .config import DEFAULT_BETA
from .errors import AFTError
from .features import with_teacher_features
from .metrics import compute_classification_metrics
from .trainer import AFTTrainer

DEFAULT_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)
SEARCH_ORDER = (DEFAULT_BETA, 0.0, 1.0, 0.3, 3.0, 10.0)  # incumbent, STL, then from the middle of the range outwards
NEVER_PRUNED = (DEFAULT_BETA, 0.0)
TRIAL_FRACTION = 0.25
REDUCTION_FACTOR = 3
DEFAULT_VALIDATION_FRACTION = 0.15
MIN_VALIDATION, MIN_PER_CLASS = 20, 2
BETA_SEARCH_NAME = "beta_search.json"


def split_validation(dataset, fraction: float, seed: int, label_column: str = "labels"):
    """(train part, validation part), stratified by label, both in dataset order: `fraction` of each class, but at
    least `MIN_PER_CLASS` of a class that has more members than that (a rare class still gets compared on); refuses
    a split too small to compare candidates on."""
    if not 0 < fraction < 1:
        raise AFTError(f"the validation fraction for --beta auto must be in (0, 1) (got {fraction}).")
    labels = np.asarray(dataset.select_columns([label_column]).with_format("numpy")[label_column])
    rng = np.random.default_rng(seed)
    held = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        share = int(round(fraction * len(members)))
        held.extend(rng.permutation(members)[: max(share, min(MIN_PER_CLASS, len(members) - 1))])
    held = np.sort(np.asarray(held, dtype=int))
    counts = np.unique(labels[held], return_counts=True)[1] if len(held) else np.array([0])
    if len(held) < MIN_VALIDATION or len(counts) < len(np.unique(labels)) or counts.min() < MIN_PER_CLASS:
        raise AFTError(f"the validation split for --beta auto would hold {len(held)} examples ({fraction:.0%} of "
                       f"{len(dataset)}, fewest per class {int(counts.min()) if len(held) else 0}); it needs at least "
                       f"{MIN_VALIDATION} and {MIN_PER_CLASS} per class: add training data, raise the validation "
                       "fraction, or give a fixed --beta.")
    keep = np.setdiff1d(np.arange(len(dataset)), held)
    return dataset.select(keep), dataset.select(held)


def final_run_steps(args, n_examples: int) -> int:
    """Optimizer steps of a run of `args` on `n_examples` (as `Trainer` counts them: max_steps, else epochs x
    ceil(batches per epoch / gradient accumulation))."""
    if args.max_steps > 0:
        return int(args.max_steps)
    batches = math.ceil(n_examples / (args.train_batch_size * max(1, args.world_size)))
    per_epoch = max(1, batches // args.gradient_accumulation_steps)
    return max(1, math.ceil(args.num_train_epochs * per_epoch))


def plan_budget(final_steps: int) -> dict:
    """Each candidate's schedule, its pruning point, and the total the candidates may spend (1x the final run)."""
    trial_steps = max(3, int(TRIAL_FRACTION * final_steps))
    return {"final_run_steps": final_steps, "trial_max_steps": trial_steps,
            "rung_step": max(1, trial_steps // REDUCTION_FACTOR), "limit": max(final_steps, trial_steps),
            "candidate_steps": 0}  # a run under 12 steps: beta = 0's own 3 steps may pass 1x


class _TrialCallback(TrainerCallback):
    """Evaluates at the rung, reports to optuna and stops the trial when it is pruned, stalled, or over budget."""

    def __init__(self, trial, trainer, budget: dict, prunable: bool):
        self.trial, self.trainer, self.budget, self.prunable = trial, trainer, budget, prunable
        self.status, self.rung_score, self.steps = "finished", None, 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1
        self.budget["candidate_steps"] += 1
        if self.trainer.stall_detector.stalled_at is not None and self.prunable:
            self.status, control.should_training_stop = "stalled", True
        elif self.budget["candidate_steps"] >= self.budget["limit"] and state.global_step < state.max_steps:
            self.status, control.should_training_stop = "stopped: budget spent", True
        elif state.global_step == self.budget["rung_step"]:
            control.should_evaluate = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.rung_score is not None or not metrics or "eval_accuracy" not in metrics:
            return
        self.rung_score = float(metrics["eval_accuracy"])
        self.trial.report(self.rung_score, state.global_step)
        if self.prunable and self.trial.should_prune():
            self.status, control.should_training_stop = "pruned", True


def _candidate_trainer(beta, model_init, args, train_part, validation, scratch, budget, trainer_kwargs):
    candidate_args = copy.deepcopy(args)
    candidate_args.beta = beta
    candidate_args.max_steps = budget["trial_max_steps"]
    candidate_args.output_dir = os.path.join(scratch, f"beta-{beta}")
    candidate_args.save_strategy = candidate_args.eval_strategy = "no"
    candidate_args.load_best_model_at_end = candidate_args.push_to_hub = False
    candidate_args.report_to = []
    transformers.set_seed(args.seed)  # every candidate starts from the same student
    trainer = AFTTrainer(model=model_init(), args=candidate_args, train_dataset=train_part, eval_dataset=validation,
                         compute_metrics=compute_classification_metrics, **copy.copy(trainer_kwargs))
    trainer.stall_detector.late_window = None  # only the early check: short runs need not have left the prior
    return trainer


def _predictions(trainer, validation) -> tuple[np.ndarray, np.ndarray, float]:
    """(which validation examples the trained candidate classifies right, the class it predicts for each, the mean
    cross-entropy of the true labels in nats)."""
    output = trainer.predict(validation)
    logits = torch.as_tensor(output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions)
    labels = torch.as_tensor(output.label_ids).long()
    predicted = logits.argmax(-1)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels).item()
    return (predicted == labels).numpy(), predicted.numpy(), loss


def _objective(model_init, args, train_part, validation, scratch, budget, trainer_kwargs, records):
    def objective(trial):
        beta = trial.suggest_categorical("beta", list(SEARCH_ORDER))
        print(f"--beta auto: beta {beta:g} ({trial.number + 1}/{len(SEARCH_ORDER)}), up to "
              f"{budget['trial_max_steps']} steps on {len(train_part)} examples", flush=True)
        trainer = _candidate_trainer(beta, model_init, args, train_part, validation, scratch, budget,
                                     trainer_kwargs)
        callback = _TrialCallback(trial, trainer, budget, prunable=beta not in NEVER_PRUNED)
        trainer.add_callback(callback)
        trainer.train()
        record = {"beta": beta, "status": callback.status, "steps": callback.steps,
                  "rung_score": callback.rung_score, "score": None}
        if callback.status == "finished":
            correct, predicted, loss = _predictions(trainer, validation)
            record.update(score=float(correct.mean()), loss=loss, correct=correct,
                          predicted_classes=int(len(np.unique(predicted))))
        records.append(record)
        del trainer
        gc.collect()
        if record["score"] is None:
            raise optuna.TrialPruned()
        return record["score"]

    return objective


def _on_plateau(records: list[dict]) -> bool:
    """The incumbent and plain fine-tuning both finished predicting one class for every validation example."""
    ends = [r for r in records if r["beta"] in NEVER_PRUNED and r["score"] is not None]
    return len(ends) == len(NEVER_PRUNED) and all(r.get("predicted_classes") == 1 for r in ends)


def _compare(record: dict, incumbent: dict) -> None:
    """Fills `record`'s wins/losses against the incumbent, paired by validation example, and the noise rule."""
    wins = int((record["correct"] & ~incumbent["correct"]).sum())
    losses = int((~record["correct"] & incumbent["correct"]).sum())
    record.update(wins_vs_default=wins, losses_vs_default=losses,
                  beats_default=bool(wins - losses > math.sqrt(wins + losses)))


def choose_beta(records: list[dict]) -> tuple[float, str]:
    """The noise rule (module docstring) over the finished candidates; also fills their wins/losses against the
    incumbent `DEFAULT_BETA`. Returns (beta, why)."""
    incumbent = next(r for r in records if r["beta"] == DEFAULT_BETA and r["score"] is not None)
    finished = [r for r in records if r["score"] is not None]
    for record in finished:
        if record is not incumbent:
            _compare(record, incumbent)
    passed = [incumbent, *(r for r in finished if r.get("beats_default"))]
    best = max(passed, key=lambda r: (r["score"], -r.get("loss", 0.0), -r["beta"]))
    trained = f"{len(finished)} of {len(DEFAULT_GRID)} candidates trained to the end"
    stl = next((r for r in finished if r["beta"] == 0.0), None)
    if _on_plateau(records):
        return DEFAULT_BETA, (f"chosen by --beta auto: the default; the candidates' short runs ended on the student's "
                              f"initial plateau (one class predicted for every validation example, with and without "
                              f"transfer), so they could not be told apart; the search stopped after {trained}")
    if best is incumbent:
        versus = f", plain fine-tuning {stl['score']:.2f}" if stl else ""
        return DEFAULT_BETA, (f"chosen by --beta auto: the default; no beta beat its validation accuracy "
                              f"{incumbent['score']:.2f}{versus} by more than the standard error, {trained}")
    versus = f" and {stl['score']:.2f} for plain fine-tuning" if stl and best is not stl else ""
    return best["beta"], (f"chosen by --beta auto: validation accuracy {best['score']:.2f} vs "
                          f"{incumbent['score']:.2f} for the default {DEFAULT_BETA:g}{versus}, {trained}")


def _run_study(objective, budget: dict, records: list[dict]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(
        min_resource=budget["rung_step"], reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0))
    for beta in SEARCH_ORDER:
        study.enqueue_trial({"beta": beta})
    for _ in SEARCH_ORDER:
        if budget["limit"] - budget["candidate_steps"] < budget["rung_step"] + 1:
            break  # not enough left to reach the pruning point: the remaining candidates are skipped
        if _on_plateau(records):
            break  # the short runs cannot tell candidates apart on this student (module docstring)
        study.optimize(objective, n_trials=1)


def search_beta(model_init, args, train_dataset, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                label_column: str = "labels", **trainer_kwargs) -> dict:
    """Choose beta as the module docstring says, on the training data minus a held-out validation split. Returns
    {"chosen_beta", "reason", "metric", "default_beta", "candidates": [{"beta", "status", "steps", "rung_score",
    "score" (validation accuracy), "loss" (validation cross-entropy, nats), "wins_vs_default", ...}], "grid",
    "order", "budget": {"final_run_steps", "trial_max_steps", "rung_step", "candidate_steps", "ratio"},
    "validation_fraction", "n_train", "n_validation", "rule"}; `args.beta` is left alone (train the final student
    with `chosen_beta`). A candidate's status: finished, pruned, stalled, "stopped: budget spent", or "not run: ..."
    (budget spent, or on plateau).

    Args:
        model_init: returns a fresh student (called once per candidate, after seeding with `args.seed`); start the
            final run the same way (`transformers.set_seed(args.seed); model_init()`), as `hf-aft train` does, so
            that it starts from the same student as the candidates.
        args: the `AFTConfig` of the final run (its steps set the budget); candidates copy it with their beta and
            their own max_steps, without saving or pushing.
        train_dataset: tokenized, with a `labels` column and the `teacher_features` column (or `args.teachers`
            set: the features are then extracted once here).
        trainer_kwargs: passed to every candidate's `AFTTrainer` (e.g. `processing_class`, `peft_config`).
    """
    if args.transfer == "none":
        raise AFTError("--beta auto searches the weight of the transfer loss: use --transfer aft, kd or rkd.")
    train_dataset = with_teacher_features(train_dataset, args, trainer_kwargs.get("text_column", "text"),
                                          trainer_kwargs.get("image_column"))
    train_part, validation = split_validation(train_dataset, validation_fraction, args.seed, label_column)
    budget = plan_budget(final_run_steps(args, len(train_dataset)))
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hf_aft_beta_") as scratch:
        _run_study(_objective(model_init, args, train_part, validation, scratch, budget, trainer_kwargs, records),
                   budget, records)
    chosen, reason = choose_beta(records)
    tried = {r["beta"] for r in records}
    skipped = "not run: on plateau" if _on_plateau(records) else "not run: budget spent"
    records += [{"beta": b, "status": skipped, "steps": 0, "rung_score": None, "score": None}
                for b in SEARCH_ORDER if b not in tried]
    budget["ratio"] = budget["candidate_steps"] / budget["final_run_steps"]
    for record in records:
        record.pop("correct", None)
    return {"chosen_beta": chosen, "reason": reason, "metric": "accuracy", "candidates": records,
            "grid": list(DEFAULT_GRID), "order": list(SEARCH_ORDER), "budget": budget,
            "validation_fraction": validation_fraction, "n_train": len(train_part), "n_validation": len(validation),
            "default_beta": DEFAULT_BETA,
            "rule": f"another beta (0 included) replaces the default {DEFAULT_BETA:g} only if (wins - losses) > "
                    "sqrt(wins + losses) on the validation examples (paired with the default, McNemar: one standard "
                    "error)"}


def save_beta_search(result: dict, output_dir: str) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, BETA_SEARCH_NAME)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return path
