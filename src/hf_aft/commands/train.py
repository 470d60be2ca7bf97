"""`hf-aft train`: parse the options, run `hf_aft.pipeline.train_student`, print what came out."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import get_type_hints

from .parsing import parse, split_config

DESCRIPTION = """Train a small student on a labelled dataset while it learns from the features of frozen teachers
(Adaptive Feature Transfer, Qiu et al., ICML 2024). The teachers run once, before training, and their features are
cached; the student, its learned scales, its results and a model card go to --output_dir.

  hf-aft train --model_name_or_path STUDENT --teachers T1 [T2@rev ...] --dataset_name DATA --output_dir OUT

Below are hf-aft's own options; every transformers TrainingArguments flag (--learning_rate, --num_train_epochs,
--seed, --per_device_train_batch_size, ...) works too: `hf-aft train --help-all` lists them all."""
REQUIRED = ("model_name_or_path", "dataset_name", "output_dir")
METAVARS = {"beta": "BETA|auto"}  # --beta takes auto too (_beta_auto)
logger = logging.getLogger(__name__)


def _beta_auto(tokens: list[str]) -> list[str]:
    """`--beta auto` (beta is a float in AFTConfig) becomes `--beta_auto true`; a later fixed `--beta X` (the command
    line after a recipe) turns it off again: the last --beta wins, as for every other flag."""
    out, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        value = token.split("=", 1)[1] if token.startswith("--beta=") else (
            tokens[i + 1] if token == "--beta" and i + 1 < len(tokens) else None)
        if value is not None and value.strip().lower() == "auto":
            out += ["--beta_auto", "true"]
        elif value is not None:
            _check_beta(value)
            out += ["--beta", value, "--beta_auto", "false"]
        else:
            out.append(token)
        i += 1 if value is None or "=" in token else 2
    return out


def _check_beta(value: str) -> None:
    """A --beta that is neither a finite number >= 0 nor auto (`autoo`, -1, nan) names both ways out, in the
    command's words (not "invalid float", nor the Python API's)."""
    import math

    from ..errors import AFTError

    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (number >= 0 and math.isfinite(number)):
        raise AFTError(f"--beta must be a number >= 0 or auto (got {value!r}); --transfer none is plain "
                       "fine-tuning.") from None


def _short_help(full_parser) -> None:
    """hf-aft's own options first (data and student, teachers, transfer, LoRA), then a pointer to the Trainer's."""
    from transformers import HfArgumentParser, TrainingArguments

    from ..arguments import PeftArguments, ScriptArguments
    from ..config import AFTConfig, TeacherArguments

    parser = HfArgumentParser((ScriptArguments, TeacherArguments, PeftArguments), prog="hf-aft train",
                              description=DESCRIPTION, formatter_class=full_parser.formatter_class)
    group = parser.add_argument_group("transfer")
    hints = get_type_hints(AFTConfig)
    trainer_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    for f in dataclasses.fields(AFTConfig):
        if f.name in AFTConfig.__annotations__ and f.name not in trainer_fields:  # the transfer loss's knobs
            f = copy.copy(f)
            f.type = hints[f.name]
            HfArgumentParser._parse_dataclass_field(group, f)
    parser.add_argument("--output_dir", help="Where the student, its scales, results and card go (required).")
    parser.add_argument("--config", help="YAML file of flag names and values (defaults; flags override it).")
    parser.add_argument("--help-all", action="store_true", help="Also list every TrainingArguments flag.")
    for action in parser._actions:
        action.metavar = METAVARS.get(action.dest, action.metavar)
    print(parser.format_help())


def parse_train_args(argv: list[str]):
    """(ScriptArguments, AFTConfig, PeftArguments) from flags, with `--config FILE.yaml` supplying defaults."""
    from ..arguments import PeftArguments, ScriptArguments
    from ..config import AFTConfig
    from ..errors import AFTError
    from ..option_checks import check_idle_options

    script_args, config, peft_args = parse((ScriptArguments, AFTConfig, PeftArguments), argv, "hf-aft train",
                                           DESCRIPTION, REQUIRED, rewrite=_beta_auto, short_help=_short_help,
                                           metavars=METAVARS)
    if config.max_steps <= 0 and config.num_train_epochs <= 0:
        raise AFTError("--num_train_epochs must be > 0 (or give --max_steps): the student would not train.")
    _drop_recipes_unread_teachers(argv, script_args, config)
    check_idle_options(script_args, config)
    return script_args, config, peft_args


def _drop_recipes_unread_teachers(argv: list[str], script_args, config) -> None:
    """A recipe an earlier hf-aft wrote for a run no term of which read its teachers (--transfer none, no probe) lists
    them: replayed (--config, check-updates --retrain), they are left out, saying so, rather than refused."""
    from ..recipe import RECIPE_HEADER

    recipe, rest = split_config(argv)
    if not (recipe and config.teachers and "--teachers" not in rest) or config.needs_teacher_features(
            bool(script_args.unlabeled_dataset)):
        return
    with open(recipe, encoding="utf-8") as f:
        if RECIPE_HEADER not in f.read(400):
            return
    logger.warning(f"hf-aft: the recipe {recipe} lists teachers no term of its run read (--transfer none, "
                   "no --distill probe): they are left out.")
    config.teachers = []


def print_summary(summary: dict) -> None:
    if "beta_note" in summary:
        print(summary["beta_note"])
    if summary.get("terms_note"):
        print(summary["terms_note"])
    if summary.get("schedule_note"):
        print(f"this run was {summary['schedule_note']}")
    eval_metrics = summary.get("eval", {})
    shown = [(k.removeprefix("eval_").replace("_", "-").replace("f1", "F1"), v) for k, v in eval_metrics.items()
             if k.removeprefix("eval_") in ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "mse", "mae",
                                            "pearson", "spearman", "f1", "precision", "recall")]
    if shown:
        print("eval " + "  ".join(f"{name} {value:.4f}" for name, value in shown))
    for line in summary.get("group_lines", []):
        print(line)
    for teacher, stats in summary.get("scales", {}).items():
        print(f"scales {teacher}: mean {stats['mean']:.3f}, above 0.5: {stats['frac_above_half']:.1%}")
    if "trainable_params" in summary:
        print(f"trainable parameters {summary['trainable_params']:,} of {summary['all_params']:,}")
    print(f"student saved to {summary['output_dir']}")
    if "hub_commit" in summary:
        print(f"pushed to the Hub: {summary['hub_commit']}")


def train(argv: list[str], check_recipe: bool = True) -> dict:
    """Run one training job from command-line tokens; returns its summary. A resume with options other than its
    checkpoint's is refused (`resume_check`). A `--config` that is a run's recipe is refused when it names a local
    source that is not found from here (`reruns.check_sources`) and, with `check_recipe`, warned about for each local
    model that changed since that run (`reruns.moved_since`) and, after training, for each split whose rows differ
    from that run's (`reruns.data_differs`)."""
    from ..distributed import one_process_launch_note
    from ..outputs import check_checkpoint_files, check_transfer_state_saved
    from ..pipeline import train_student
    from ..resume_check import (
        check_resume_options,
        check_resume_steps,
        command_options,
        read_options,
        recording_sources,
    )

    script_args, config, peft_args = parse_train_args(argv)
    if note := one_process_launch_note():  # asked for several processes, got one
        logger.warning(note)
    recipe_folder = check_rerun(argv, script_args, config, warn=check_recipe)
    if config.resume_from_checkpoint and not script_args.beta_auto:  # before any data is read or teacher runs
        check_checkpoint_files(config.resume_from_checkpoint)  # (--beta auto cannot resume: the run refuses that)
        recorded = (read_options(config.resume_from_checkpoint) or {}).get("transfer", config.transfer)
        if config.transfer in ("aft", "kd") and recorded == config.transfer:  # (another --transfer: named below)
            check_transfer_state_saved(config.resume_from_checkpoint)  # before the options' check runs the teachers
        check_resume_options(config.resume_from_checkpoint, command_options(script_args, config))
        check_resume_steps(config.resume_from_checkpoint, config.max_steps)
    with recording_sources(script_args):  # the checkpoints record the student and unlabelled rows' sources
        summary = train_student(script_args, config, peft_args)
    if check_recipe and recipe_folder and summary["is_main_process"]:
        from ..reruns import data_differs

        for line in data_differs(recipe_folder, summary["output_dir"]):
            logger.warning(line)
    return summary


def check_rerun(argv: list[str], script_args, config, warn: bool) -> str | None:
    """Recipes name local sources as they were given and pin local models only by name: refuse one that is not found
    from here, and say when a local model is not the run's any more (with `warn`) or the run trained on another
    number of processes (always: `--retrain` too). Returns the recipe's folder (None: no
    `--config`)."""
    from ..distributed import launched_world_size
    from ..reruns import check_sources, moved_since, processes_differ, rerun_sources

    recipe = split_config(argv)[0]
    if not recipe:
        return None
    folder = os.path.dirname(os.path.abspath(recipe))
    named = {"teacher": config.teachers or [], "generator": [config.generator],
             "distill_teacher": [config.distill_teacher], "dataset": [script_args.dataset_name],
             "unlabeled_dataset": [script_args.unlabeled_dataset], "student": [script_args.model_name_or_path]}
    sources = rerun_sources(folder, named)
    check_sources(sources)
    if os.environ.get("RANK", "0") == "0":  # said once, by the main process of a launched run
        for line in (moved_since(sources) if warn else []) + processes_differ(folder, launched_world_size()):
            logger.warning(line)
    return folder


def run(argv: list[str]) -> None:
    summary = train(argv)
    if summary["is_main_process"]:
        print_summary(summary)
