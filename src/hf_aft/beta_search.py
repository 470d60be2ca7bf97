"""`--beta auto`: choose beta on a validation split held out of the training data.

The grid is `DEFAULT_GRID` = (0, 0.03, 0.1, 0.3, 1). beta = 0 trains exactly the plain fine-tuning (STL) student, so
the chosen beta is never worse than STL on the validation split; ties go to the smaller beta. Budget: one run per
candidate with the configured schedule (same epochs or max_steps, batch size, learning rate, seed) on the other
(1 - validation_fraction) of the training data, i.e. about len(grid) x (1 - validation_fraction) = 4.25 training runs
with the defaults, before the final run on all of the training data with the chosen beta. Teacher features are
computed once, before the split, so every candidate and the final run read the same cache.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import tempfile

import numpy as np
import transformers

from .errors import AFTError
from .features import with_teacher_features
from .metrics import compute_classification_metrics
from .trainer import AFTTrainer

DEFAULT_GRID = (0.0, 0.03, 0.1, 0.3, 1.0)
DEFAULT_VALIDATION_FRACTION = 0.15
MIN_VALIDATION, MIN_PER_CLASS = 20, 2
BETA_SEARCH_NAME = "beta_search.json"


def split_validation(dataset, fraction: float, seed: int, label_column: str = "labels"):
    """(train part, validation part), stratified by label, both in dataset order; refuses a split too small to
    compare candidates on."""
    if not 0 < fraction < 1:
        raise AFTError(f"the validation fraction for --beta auto must be in (0, 1) (got {fraction}).")
    labels = np.asarray(dataset.select_columns([label_column]).with_format("numpy")[label_column])
    rng = np.random.default_rng(seed)
    held = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        held.extend(rng.permutation(members)[: int(round(fraction * len(members)))])
    held = np.sort(np.asarray(held, dtype=int))
    counts = np.unique(labels[held], return_counts=True)[1] if len(held) else np.array([0])
    if len(held) < MIN_VALIDATION or len(counts) < len(np.unique(labels)) or counts.min() < MIN_PER_CLASS:
        raise AFTError(f"the validation split for --beta auto would hold {len(held)} examples ({fraction:.0%} of "
                       f"{len(dataset)}, fewest per class {int(counts.min()) if len(held) else 0}); it needs at least "
                       f"{MIN_VALIDATION} and {MIN_PER_CLASS} per class: add training data, raise the validation "
                       "fraction, or give a fixed --beta.")
    keep = np.setdiff1d(np.arange(len(dataset)), held)
    return dataset.select(keep), dataset.select(held)


def search_beta(model_init, args, train_dataset, grid=DEFAULT_GRID,
                validation_fraction: float = DEFAULT_VALIDATION_FRACTION, metric: str = "accuracy",
                compute_metrics=None, label_column: str = "labels", **trainer_kwargs) -> dict:
    """Train one student per beta in `grid` on the training data minus a held-out validation split and score each
    on that split. Returns {"chosen_beta", "metric", "candidates": [{"beta", "score", "metrics"}], "grid",
    "validation_fraction", "n_train", "n_validation"}; `args.beta` is left alone (train the final student with
    `chosen_beta`).

    Args:
        model_init: returns a fresh student (called once per candidate, after seeding with `args.seed`); start the
            final run the same way (`transformers.set_seed(args.seed); model_init()`), as `hf-aft train` does, so
            that it starts from the same student as the candidates.
        args: the `AFTConfig` of the final run; candidates copy it with their beta, without saving or pushing.
        train_dataset: tokenized, with a `labels` column and the `teacher_features` column (or `args.teachers`
            set: the features are then extracted once here).
        trainer_kwargs: passed to every candidate's `AFTTrainer` (e.g. `processing_class`, `peft_config`).
    """
    grid = sorted({float(beta) for beta in grid})
    if not grid or grid[0] != 0.0 or any(beta < 0 for beta in grid):
        raise AFTError(f"the beta grid must include 0 (plain fine-tuning) and no negative values (got {grid}).")
    if args.transfer == "none":
        raise AFTError("--beta auto searches the weight of the transfer loss: use --transfer aft, kd or rkd.")
    train_dataset = with_teacher_features(train_dataset, args, trainer_kwargs.get("text_column", "text"),
                                          trainer_kwargs.get("image_column"))
    train_part, validation = split_validation(train_dataset, validation_fraction, args.seed, label_column)
    compute_metrics = compute_metrics or compute_classification_metrics
    with tempfile.TemporaryDirectory(prefix="hf_aft_beta_") as scratch:
        candidates = []
        for i, beta in enumerate(grid, 1):
            print(f"--beta auto: beta {beta:g} ({i}/{len(grid)}), training on {len(train_part)} examples", flush=True)
            candidates.append(_score_candidate(beta, model_init, args, train_part, validation, scratch, metric,
                                               compute_metrics, trainer_kwargs))
    best = max(candidates, key=lambda c: (c["score"], -c["beta"]))  # ties: the smaller beta (STL first)
    return {"chosen_beta": best["beta"], "metric": metric, "candidates": candidates, "grid": grid,
            "validation_fraction": validation_fraction, "n_train": len(train_part), "n_validation": len(validation),
            "budget": f"{len(grid)} runs of the configured schedule on {len(train_part)} examples"}


def _score_candidate(beta, model_init, args, train_part, validation, scratch, metric, compute_metrics,
                     trainer_kwargs) -> dict:
    """Train one candidate from the same seeded student, without saving anything, and score it on validation."""
    candidate_args = copy.deepcopy(args)
    candidate_args.beta = beta
    candidate_args.output_dir = os.path.join(scratch, f"beta-{beta}")
    candidate_args.save_strategy = candidate_args.eval_strategy = "no"
    candidate_args.load_best_model_at_end = candidate_args.push_to_hub = False
    candidate_args.report_to = []
    transformers.set_seed(args.seed)  # every candidate starts from the same student
    trainer = AFTTrainer(model=model_init(), args=candidate_args, train_dataset=train_part, eval_dataset=validation,
                         compute_metrics=compute_metrics, **copy.copy(trainer_kwargs))
    trainer.train()
    metrics = trainer.evaluate()
    del trainer
    gc.collect()
    if f"eval_{metric}" not in metrics:
        raise AFTError(f"the validation metrics have no {metric!r} (got {sorted(metrics)}): pass a metric that "
                       "compute_metrics returns.")
    return {"beta": beta, "score": float(metrics[f"eval_{metric}"]),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}


def save_beta_search(result: dict, output_dir: str) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, BETA_SEARCH_NAME)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return path
