"""Clashes with the Trainer defaults hf-aft changes (`--save_strategy no`: no checkpoint unless asked;
`--logging_steps 0.1`: a fraction of the run): TrainingArguments would refuse some of them without saying why, and
let the others do nothing."""

from __future__ import annotations

from transformers import TrainingArguments

from .errors import AFTError


def _value(option) -> str:
    return str(getattr(option, "value", option))  # an IntervalStrategy / SaveStrategy, or its string


def check_changed_defaults(args) -> None:
    """Options that clash with a Trainer default hf-aft changes (`--save_strategy no`, `--logging_steps 0.1`) are
    refused naming that default and the fix (TrainingArguments would refuse some without saying why, and let the
    others do nothing)."""
    save, evaluate = _value(args.save_strategy), _value(args.eval_strategy)
    default = "hf-aft's default --save_strategy is 'no' (no checkpoints)"
    if args.load_best_model_at_end and save == "no" and evaluate != "no":
        raise AFTError(f"--load_best_model_at_end needs a checkpoint at each evaluation, but {default}: pass "
                       f"--save_strategy {evaluate} (matching --eval_strategy {evaluate}) with "
                       "--load_best_model_at_end.")
    if args.load_best_model_at_end and save == "no":
        raise AFTError(f"--load_best_model_at_end needs evaluations and a checkpoint at each, but --eval_strategy is "
                       f"'no' and {default}: pass --eval_strategy epoch --save_strategy epoch with it.")
    if save == "no" and args.save_steps != TrainingArguments.save_steps:
        raise AFTError(f"--save_steps {args.save_steps:g} would save nothing: {default}; pass --save_strategy steps "
                       "with --save_steps.")
    if (args.load_best_model_at_end and evaluate == save == "steps" and args.eval_steps is None
            and args.logging_steps < 1 <= args.save_steps):
        raise AFTError(f"--load_best_model_at_end needs --save_steps to be a multiple of --eval_steps, which defaults "
                       f"to --logging_steps, hf-aft's default {args.logging_steps:g} (a fraction of the run), not a "
                       f"step count like --save_steps {args.save_steps:g}: pass --eval_steps too (e.g. --eval_steps "
                       f"{args.save_steps:g}).")
