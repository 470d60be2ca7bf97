"""`OUT/recipe.yaml`: every option that shaped a training run, as YAML that `hf-aft train --config` reads back.

The recipe is built from the parsed dataclasses (`ScriptArguments`, `AFTConfig`, `PeftArguments`): every value that
differs from what the same dataclass holds when nothing is given, plus the essentials (student, dataset and columns,
teachers, transfer, beta, seed, schedule). Its keys are flag names. Teachers are pinned: a Hub teacher as `id@sha`
(the commit its features came from), a local folder by its path (its content hash is in `audit.json`). After
`--beta auto` the recipe says `beta: <chosen>`, so a rerun trains once; `--distill auto` is written as what it
resolved to (`probe` or `none`). Tokens are never written (`hub_token` and any
field whose name holds `token`), nor the options that only say where the run went (output dir, push, resume).

    hf-aft train --config OUT/recipe.yaml --output_dir NEW    # the same run again (same features, from the cache)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from types import SimpleNamespace

import yaml

from .errors import AFTError, one_line
from .outputs import CARD_INPUTS_NAME
from .teachers.spec import is_hub_revision, parse_teacher, split_gguf

RECIPE_NAME = "recipe.yaml"
RECIPE_HEADER = "hf-aft recipe of the run in"  # the first line of a run's recipe (run_records)
# Options that say where a run goes or how it is published, not what it trains: never in a recipe.
NOT_RECIPE = {"output_dir", "logging_dir", "overwrite_output_dir", "resume_from_checkpoint", "push_to_hub",
              "hub_model_id", "hub_strategy", "hub_private_repo", "hub_revision", "hub_always_push", "baseline_dir",
              "beta_auto", "skip_cost_report", "run_name"}
ESSENTIALS = ("model_name_or_path", "dataset_name", "dataset_config", "text_column", "image_column", "label_column",
              "train_split", "eval_split", "max_length", "teachers", "transfer", "beta", "seed", "learning_rate",
              "num_train_epochs", "max_steps", "per_device_train_batch_size", "use_cpu", "use_peft")


def pinned_teachers(specs: list[str] | None, infos: list | None) -> list[str] | None:
    """Each teacher spec pinned to the revision its features came from: `id@sha` (`id@sha::FILE.gguf`) for a Hub
    teacher; a local folder or file as given (its content hash is recorded in the audit)."""
    if not specs:
        return None
    pinned = []
    for spec, info in zip(specs, infos or [None] * len(specs), strict=True):
        source, gguf_file = split_gguf(spec)
        name, _ = parse_teacher(source)
        if info is None or os.path.exists(name) or not is_hub_revision(info.revision):
            pinned.append(spec)
            continue
        pinned.append(f"{name}@{info.revision}" + (f"::{gguf_file}" if gguf_file else ""))
    return pinned


def _plain(value):
    """A value as YAML can hold it and the flag parser reads it back (enums by value, mappings as JSON)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None  # objects built by __post_init__ (accelerator config, ...): not options


def _reference(options):
    """What the same dataclass holds when nothing is given (after its own `__post_init__`)."""
    cls = type(options)
    required = {f.name: getattr(options, f.name) for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if any(f.name == "use_cpu" for f in dataclasses.fields(cls)):  # keeps the device-derived defaults comparable
        required["use_cpu"] = options.use_cpu
    if any(f.name == "output_dir" for f in dataclasses.fields(cls)):
        required["output_dir"] = options.output_dir
    return cls(**required)


def options_of(*parsed) -> dict:
    """The recipe's options from the parsed dataclasses: non-default values plus the essentials, no token."""
    recipe = {}
    for options in parsed:
        if options is None:
            continue
        reference = _reference(options)
        for f in dataclasses.fields(options):
            name = f.name
            if not f.init or name in NOT_RECIPE or "token" in name:
                continue
            value, default = _plain(getattr(options, name)), _plain(getattr(reference, name))
            if name in ESSENTIALS or (value != default and value is not None):
                recipe[name] = value
    return recipe


def build_recipe(script_args, config, peft_args=None, infos=None, distill: str | None = None,
                 revisions: dict | None = None) -> dict:
    """The recipe of a finished run (`infos`: the teachers' `TeacherInfo`, for their resolved revisions; `distill`:
    the distillation the run used, `--distill auto` resolved, so that a rerun does not depend on that default;
    `revisions`: what `--generator` and `--distill_teacher` resolved to, by option name, pinned as a teacher's is)."""
    recipe = options_of(script_args, config, peft_args)
    recipe["teachers"] = pinned_teachers(config.teachers, infos)
    for option, revision in (revisions or {}).items():
        if recipe.get(option):
            recipe[option] = pinned_teachers([recipe[option]], [SimpleNamespace(revision=revision)])[0]
    recipe["beta"] = float(config.beta)  # after --beta auto: the chosen beta
    if config.transfer == "none":  # no term reads it: a rerun would refuse it
        recipe.pop("beta")
    if distill:
        recipe["distill"] = distill
    if distill == "none":  # e.g. `auto` turned off for too few rows: a rerun would refuse what has no effect
        for name in ("distill_weight", "distill_temperature", "distill_teacher"):
            recipe.pop(name, None)
    for name in ("beta_validation_split", "beta_validation_fraction"):  # only --beta auto uses them; beta is fixed now
        recipe.pop(name, None)
    if not recipe.get("use_peft"):
        for name in [k for k in recipe if k.startswith("lora_")]:
            recipe.pop(name)
    return {key: value for key, value in recipe.items() if value is not None}


def write_recipe(output_dir: str, recipe: dict, header: list[str] = ()) -> str:
    """Write `OUT/recipe.yaml` (comment lines in `header` first); returns its path."""
    path = os.path.join(output_dir, RECIPE_NAME)
    comments = "".join(f"# {line}\n" for line in header)
    with open(path, "w") as f:
        f.write(comments + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False))
    return path


def read_card_inputs(output_dir: str) -> dict | None:
    """The card's facts (model_card.json, card.py's CardFacts) as the run wrote them, or None."""
    path = os.path.join(output_dir, CARD_INPUTS_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_recipe(folder: str) -> dict:
    """The recipe of a run's folder as a mapping of flag names to values.

    Raises:
        AFTError: the folder has no readable recipe.yaml (a run from before hf-aft wrote recipes, or not a run).
    """
    path = os.path.join(folder, RECIPE_NAME)
    try:
        with open(path) as f:
            recipe = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as error:
        raise AFTError(f"could not read the recipe {path!r} ({one_line(error)}): give the output dir of an hf-aft "
                       "train run that wrote one.") from error
    if not isinstance(recipe, dict):
        raise AFTError(f"{path!r} is not a recipe (a YAML mapping of flag names to values).")
    return recipe
