"""Checks every options dataclass runs on itself (`AFTConfig`, `TeacherArguments`): choices, finite numbers, and the
`report_to` integrations, so that the Python API refuses what the command line refuses; and `check_idle_options`,
the `hf-aft train` options that would change nothing."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import fields
from typing import Literal, get_args, get_origin, get_type_hints

from .errors import AFTError


def check_choices(options) -> None:
    """Every `Literal`-typed field of a dataclass holds one of its choices (the parser checks flags; this checks
    values set in Python or YAML)."""
    hints = get_type_hints(type(options))
    for f in fields(options):
        hint = hints.get(f.name)
        choices = get_args(hint) if get_origin(hint) is Literal else ()
        if choices and getattr(options, f.name) not in choices:
            raise AFTError(f"unknown {f.name} {getattr(options, f.name)!r}: choose one of {', '.join(choices)}.")


# Numbers that must be > 0, >= 0 or within a range (all numbers must be finite), on the command line and in Python.
POSITIVE = ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "max_length", "teacher_batch_size", "teacher_max_length", "lora_r",
            "lora_alpha", "scales_learning_rate", "folds", "num_layers", "save_steps", "eval_steps")
NON_NEGATIVE = ("beta", "weight_decay", "max_grad_norm", "warmup_steps", "num_train_epochs", "logging_steps",
                "adam_epsilon", "dataloader_num_workers")  # the last two: torch's raw errors after the teachers ran
FRACTIONS = ("lora_dropout", "warmup_ratio", "adam_beta1", "adam_beta2", "label_smoothing_factor")  # in [0, 1)
OPEN_FRACTIONS = ("beta_validation_fraction",)  # in (0, 1): none held out chooses nothing
SEEDS = ("seed", "data_seed")


def number_problem(name: str, value) -> str | None:
    """What is wrong with option `name`'s number `value` ("must be > 0 (got -1)"), or None (also for non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    ranges = [(not math.isfinite(value), "a finite number"), (name in POSITIVE and value <= 0, "> 0"),
              (name in NON_NEGATIVE and value < 0, ">= 0"), (name in FRACTIONS and not 0 <= value < 1, "in [0, 1)"),
              (name in OPEN_FRACTIONS and not 0 < value < 1, "in (0, 1)"),
              (name == "max_steps" and (value == 0 or value < -1), "> 0, or -1 to train --num_train_epochs"),
              (name in SEEDS and not 0 <= value < 2**32, "in 0..2**32-1")]
    return next((f"must be {rule} (got {value})" for broken, rule in ranges if broken), None)


def check_finite(options) -> None:
    """Every number of a dataclass is finite (NaN and inf train nothing), within its range (`number_problem`), and
    seeds fit numpy's 0..2**32-1: the Python API refuses what the command line refuses."""
    for f in fields(options):
        problem = number_problem(f.name, getattr(options, f.name))
        if problem:
            raise AFTError(f"{f.name} {problem}.")


def check_count(value, name: str, least: int = 1) -> int:
    """`value` as an int when it is a whole number >= `least` (not a bool or a float): a count the Python API is given
    (`batch_size=`, `num_layers=`, `folds=`), refused in one line that names it as `name` rather than deep inside.

    Raises:
        AFTError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise AFTError(f"{name} must be a whole number >= {least} (got {value!r}).")
    return int(value)


MOST_COPIES, MOST_GENERATED = 1_000, 1_000_000  # beyond these a run would not end, or not fit in memory


def check_made_rows(config) -> None:
    """The options that make unlabelled rows from the labelled ones: `augment_copies` and `generate_texts` are whole
    numbers >= 0, a generator comes with `generate_texts` only, and some term reads the rows they make."""
    for name, most, why in (("augment_copies", MOST_COPIES, "copies of each labelled row, held in memory"),
                            ("generate_texts", MOST_GENERATED, "texts, written at one or two a second on a CPU")):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AFTError(f"--{name} must be a whole number >= 0 (got {value!r}).")
        if value > most:
            raise AFTError(f"--{name} {value:,} is more than the {most:,} {why}: pass a number up to {most:,} "
                           "(unlabelled data of your own goes in --unlabeled_dataset).")
        if value and config.transfer == "none" and config.distill == "none":
            raise AFTError(f"--{name} with --transfer none and --distill none: no term reads the rows it makes (the "
                           f"task loss needs labels); add a transfer or --distill probe, or pass --{name} 0.")
    if config.generate_texts and not config.generator:
        raise AFTError("--generate_texts needs --generator ID: a causal language model (Hub id, folder or GGUF "
                       "file, as teachers are named), e.g. HuggingFaceTB/SmolLM2-135M-Instruct.")
    if config.generator and not config.generate_texts:
        raise AFTError("--generator is used by --generate_texts N only: pass how many texts to generate, or drop "
                       "--generator.")


def check_report_to(report_to: list[str]) -> None:
    """Each `report_to` integration is one transformers knows and is installed (else Trainer fails deep inside)."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    for name in report_to or []:
        if name not in INTEGRATION_TO_CALLBACK:
            known = ", ".join(INTEGRATION_TO_CALLBACK)
            raise AFTError(f"unknown report_to {name!r}: choose none, all or one of {known} (--report_to).")
        if name not in get_available_reporting_integrations():
            raise AFTError(f"report_to {name!r}: its package is not installed: install it, or pass --report_to none.")


def _changed(options, name: str) -> bool:
    """Whether `options.name` differs from its dataclass default: an option the user set (a value equal to the
    default does what it would do unset)."""
    default = next(f.default for f in fields(options) if f.name == name)
    return getattr(options, name) != default


# Options of some transfer terms only: name -> the --transfer values whose term reads it.
TRANSFER_OPTIONS = {"beta": ("aft", "kd", "rkd"), "kernel": ("aft",), "learn_scales": ("aft",),
                    "kernel_scope": ("aft", "rkd"),
                    "balance_teachers": ("aft", "kd", "rkd"), "scales_learning_rate": ("aft", "kd", "rkd")}


def check_idle_options(script_args, config) -> None:
    """`hf-aft train` options (and `train_student`'s) set to a value that would change nothing are refused, naming
    what they need: the smallest group without groups, the unlabelled split without unlabelled data, the labelled
    share of a batch without unlabelled rows, a transfer term's options under another --transfer (`TRANSFER_OPTIONS`),
    the distillation weight and temperature without a distillation term."""
    blank = next((f.name for f in fields(script_args) if isinstance(value := getattr(script_args, f.name), str)
                  and not value.strip() and f.default != value), None)
    if blank:  # Python's ScriptArguments(unlabeled_dataset=""): the command line refuses the empty flag itself
        raise AFTError(f"{blank} is empty: give it a value, or leave it out.")
    if _changed(script_args, "group_min_rows") and not script_args.group_column:
        raise AFTError(f"--group_min_rows {script_args.group_min_rows} says which groups are too small to judge, and "
                       "this run has no --group_column: add --group_column COLUMN, or drop --group_min_rows.")
    check_pool_split(script_args)
    if script_args.beta_auto and config.transfer == "none":  # before --teachers, which it reads
        raise AFTError("--beta auto searches the weight of the transfer loss: use --transfer aft, kd or rkd.")
    check_idle_config(config, bool(script_args.unlabeled_dataset))


def check_pool_split(args) -> None:
    """`--unlabeled_split` set without `--unlabeled_dataset` (`hf-aft train` and `hf-aft features`) changes nothing."""
    if _changed(args, "unlabeled_split") and not args.unlabeled_dataset:
        raise AFTError(f"--unlabeled_split {args.unlabeled_split} is the split of --unlabeled_dataset, which "
                       "this run does not have: add --unlabeled_dataset SOURCE, or drop --unlabeled_split.")



def check_pool_label_column(args) -> None:
    """`hf-aft features --label_column` names the column dropped from the pool's rows only: without a pool it is
    read nowhere (the labelled splits are saved as they are)."""
    if _changed(args, "label_column") and not args.unlabeled_dataset:
        raise AFTError(f"--label_column {args.label_column} names the label column dropped from --unlabeled_dataset's "
                       "rows (hf-aft features saves the labelled splits as they are), and this run has no pool: drop "
                       "--label_column, or add --unlabeled_dataset SOURCE.")


def check_idle_config(config, pool: bool) -> None:
    """The `AFTConfig` part of `check_idle_options`, which AFTTrainer runs too (`pool`: unlabelled data given): the
    labelled share without unlabelled rows, a transfer term's options under another --transfer, the distillation
    weight and temperature without a distillation term, teachers that no term reads."""
    if _changed(config, "labeled_fraction") and not (pool or config.augment_copies or config.generate_texts):
        raise AFTError(f"--labeled_fraction {config.labeled_fraction:g} is the labelled share of batches that mix in "
                       "unlabelled rows, and this run has none (no --unlabeled_dataset, --augment_copies or "
                       "--generate_texts): add some, or drop --labeled_fraction.")
    if pool or config.augment_copies or config.generate_texts:
        check_batch_mix(config)
    for name, transfers in TRANSFER_OPTIONS.items():
        if _changed(config, name) and config.transfer not in transfers:
            flag = f"--no_{name}" if getattr(config, name) is False else f"--{name}"
            terms = " and ".join([", ".join(t.upper() for t in transfers[:-1]), transfers[-1].upper()] if
                                 len(transfers) > 1 else [transfers[0].upper()])
            raise AFTError(f"{flag} shapes the {terms} transfer term only, and "
                           f"this run has --transfer {config.transfer}: drop {flag}, or pass --transfer "
                           f"{transfers[0]}.")
    if pool:  # a pool no term reads is named first: reading it (--distill probe) reads the teachers too
        check_pool_read(config)
    check_teachers_read(config, pool)
    if config.resolved_distill(pool) != "none":
        return
    why = ("--distill none" if config.distill == "none" else
           "--distill auto is none for --transfer none without unlabelled rows")
    for name in ("distill_weight", "distill_temperature"):
        if _changed(config, name):
            raise AFTError(f"--{name} is used by the distillation term only, and this run has none ({why}): drop "
                           f"--{name}, or pass --distill probe.")


def check_teachers_read(config, pool: bool) -> None:
    """--teachers with no term that reads their features (--transfer none, and a distillation other than the probe):
    the teachers would not run, nor be in audit.json, yet the recipe would list them."""
    if not config.teachers or config.needs_teacher_features(pool):
        return
    distill = config.resolved_distill(pool)
    why = (f"--distill {distill}" if config.distill != "auto" else
           "--distill auto is none for --transfer none without unlabelled rows")
    probe = " or --distill probe" if distill != "logits" else ""  # --distill_teacher goes with logits only
    raise AFTError(f"--teachers are read by a transfer term or --distill probe only, and this run has neither "
                   f"(--transfer none, {why}): drop --teachers, or pass --transfer aft (kd, rkd){probe}.")


def check_batch_mix(config) -> None:
    """With unlabelled rows, `labeled_fraction` leaves one row or more of each kind in a batch (the global batch:
    every device's rows), or an epoch, which sees each set once at that share, grows without bound (0.999 of 8 rows:
    a thousand times the rows) while one kind is nearly never drawn."""
    fraction = config.labeled_fraction
    batch = config.per_device_train_batch_size * max(config.world_size, 1)
    if fraction is None or batch < 2:
        return
    scarce, kind = min((fraction, "labelled"), (1 - fraction, "unlabelled"))
    if scarce * batch < 1 - 1e-9:
        low = math.ceil(1000 / batch) / 1000  # ends rounded inwards: each is a value that is accepted
        raise AFTError(f"--labeled_fraction {fraction:g} leaves {scarce * batch:.3g} {kind} rows in each batch of "
                       f"{batch}: give one from {low:g} to {1 - low:g}, or a larger --per_device_train_batch_size.")


def check_pool_read(config) -> None:
    """Some term of the run reads unlabelled rows: the task loss needs labels."""
    if config.transfer == "none" and config.distill == "none":
        raise AFTError("--unlabeled_dataset with --transfer none and --distill none: no term reads unlabelled rows "
                       "(the task loss needs labels); add a transfer or --distill probe, or drop --unlabeled_dataset.")


def check_source_types(inputs: dict) -> None:
    """What `train_student` reads by name (`{"--dataset_name": value, ...}`) is a name or path, as on the command line:
    a Dataset or model object belongs to `AFTTrainer`, which takes them as they are."""
    for option, value in inputs.items():
        values = value if isinstance(value, (list, tuple)) and option == "--teachers" else [value]
        for item in values:
            if item is not None and not isinstance(item, (str, os.PathLike)):
                raise AFTError(f"{option} takes a Hub id or a path, not a {type(item).__name__}: save it "
                               "(save_to_disk, save_pretrained) and pass the folder, or give the object itself to "
                               "AFTTrainer (train_dataset=, unlabeled_dataset=, model=).")
