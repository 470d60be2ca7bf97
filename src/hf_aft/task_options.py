"""The options each problem type takes (targets.py names the types), checked before any teacher runs: the metric to
keep the best model by, and the options that work for some types only."""

from __future__ import annotations

from .errors import AFTError
from .targets import MULTI, REGRESSION, SINGLE, TOKEN

# What a run with a student of another problem type cannot use yet, and why (checked before any teacher runs).
# Options that work for some problem types only: name -> (the types, what the option is, for the refusal).
SUPPORTED_TYPES = {
    "unlabeled_dataset": ((SINGLE, MULTI, REGRESSION, TOKEN), "--unlabeled_dataset"),
    "distill": ((SINGLE, MULTI, REGRESSION, TOKEN), "--distill"),
    "distill_logits": ((SINGLE,), "--distill logits (a task teacher's class probabilities)"),
    "distill_temperature": ((SINGLE, MULTI, TOKEN), "--distill_temperature (it softens class probabilities)"),
    "group_column": ((SINGLE,), "--group_column (its per-group results are accuracies)"),
}


def check_supported(problem_type: str, source: str = "from the label column, or --problem_type", **given) -> None:
    """Refuses the options in `given` (name -> whether it is on) that `SUPPORTED_TYPES` does not allow for
    `problem_type` (`source`: where the run's problem type came from, for the refusal).

    Raises:
        AFTError: the first such option that is on, naming the problem type and the way out.
    """
    for name, on in given.items():
        types, option = SUPPORTED_TYPES[name]
        if on and problem_type not in types:
            names = ", ".join(t.removesuffix("_classification").replace("_", "-") for t in types)
            raise AFTError(f"{option} works for {names} students only, and this run is {problem_type} ({source}): "
                           "drop that option.")


def check_task_options(script_args, config, problem_type: str) -> None:
    """Before any teacher runs (`ScriptArguments`, `AFTConfig`): the metric to keep the best model by is one this
    problem type reports (lower is better for errors), and the single-label-only options are off."""
    from .metrics import METRICS_BY_PROBLEM_TYPE

    reported = METRICS_BY_PROBLEM_TYPE[problem_type]
    metric = (config.metric_for_best_model or "loss").removeprefix("eval_")
    if metric not in reported:  # Trainer would find out after training, in a KeyError
        raise AFTError(f"--metric_for_best_model {config.metric_for_best_model!r} is not a metric of hf-aft's "
                       f"evaluation of a {problem_type} student: choose one of {', '.join(reported)}.")
    if config.metric_for_best_model and metric in ("mse", "mae"):
        config.greater_is_better = False
    if config.label_smoothing_factor and problem_type in ("multi_label_classification", "regression"):
        raise AFTError(f"--label_smoothing_factor {config.label_smoothing_factor} smooths a cross-entropy over "
                       f"classes; a {problem_type} student trains with binary cross-entropy or squared error: leave "
                       "it out.")
    check_supported(problem_type, group_column=bool(script_args.group_column),
                    unlabeled_dataset=bool(script_args.unlabeled_dataset),
                    distill=config.distill not in ("none", "auto"), distill_logits=config.distill == "logits",
                    distill_temperature=config.distill_temperature != 1.0)
