"""`hf-aft` command line: `hf-aft train ...` (every AFTConfig / TrainingArguments flag), `hf-aft demo`, and the
subcommands listed in `COMMANDS`.

`--config FILE.yaml` supplies defaults; flags on the command line override them (TRL's `trl sft` pattern).
Bad input ends with one line `hf-aft: error: ...` and exit status 2; set HF_AFT_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass, field

import yaml

from .errors import AFTError


@dataclass
class ScriptArguments:
    """What to train on: the student, the dataset and its columns."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The student: a Hub id or a local folder of a transformers model."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A Hub dataset id, a folder written by save_to_disk, or csv/json/parquet file(s), "
                  "comma-separated."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the input text."})
    image_column: str | None = field(
        default=None,
        metadata={"help": "Column holding images (PIL images, arrays or file paths): trains an image classifier "
                  "(AutoModelForImageClassification, preprocessed on the fly by its own AutoImageProcessor, which is "
                  "saved with it). Image teachers read this column, text teachers --text_column."},
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the class label."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default=None, metadata={"help": "Split to evaluate on (default: test, else validation, if present)."}
    )
    max_length: int = field(default=128, metadata={"help": "The student truncates texts to this many tokens."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds files."}
    )
    baseline_dir: str | None = field(
        default=None,
        metadata={"help": "Output dir of a plain fine-tuning run (--transfer none) on the same data: its eval results "
                  "appear next to this model's in the model card."},
    )
    beta_auto: bool = field(
        default=False, metadata={"help": "What --beta auto sets: choose beta from {0, 0.03, 0.1, 0.3, 1} on a "
                                 "validation split held out of the training data, then train with it."}
    )
    beta_validation_fraction: float = field(
        default=0.15, metadata={"help": "Fraction of the training data held out to choose beta with --beta auto."}
    )


@dataclass
class PeftArguments:
    """A LoRA student (TRL's `ModelConfig` flag names): only the adapter and the classification head train."""

    use_peft: bool = field(default=False, metadata={"help": "Train a LoRA adapter (and the head) instead of all "
                                                             "of the student's weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the adapter's output is scaled by alpha/r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules that get adapters (default: peft's choice for the architecture, "
                                "e.g. query and value for BERT)."}
    )

    def lora_config(self):
        """The `LoraConfig`, or None without --use_peft."""
        if not self.use_peft:
            return None
        if self.lora_r < 1:
            raise AFTError(f"--lora_r must be >= 1 (got {self.lora_r}).")
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.lora_target_modules, task_type="SEQ_CLS")


def _parser():
    from transformers import HfArgumentParser

    from .config import AFTConfig

    return HfArgumentParser((ScriptArguments, AFTConfig, PeftArguments), prog="hf-aft train")


def parse_train_args(argv: list[str]):
    """(ScriptArguments, AFTConfig, PeftArguments) from flags, with `--config FILE.yaml` supplying defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(_beta_auto_flag(argv))
    parser = _parser()
    defaults = {}
    if known.config:
        try:
            with open(known.config) as f:
                defaults = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as error:
            raise AFTError(f"could not read config {known.config!r}: {error}") from None
        if not isinstance(defaults, dict):
            raise AFTError(f"config {known.config!r} must be a YAML mapping of flag names to values.")
        if defaults.get("beta") == "auto":
            defaults.pop("beta")
            defaults["beta_auto"] = True
        allowed = {action.dest for action in parser._actions}
        unknown = sorted(set(defaults) - allowed)
        if unknown:
            raise AFTError(f"config {known.config!r} has unknown keys {unknown}: use the flag names of hf-aft train.")
        parser.set_defaults(**defaults)
    script_args, config, peft_args = parser.parse_args_into_dataclasses(rest)
    given = {arg.split("=")[0][2:] for arg in rest if arg.startswith("--")} | set(defaults)
    missing = [f"--{key}" for key in ("model_name_or_path", "dataset_name", "output_dir") if key not in given]
    if missing:
        raise AFTError(f"{', '.join(missing)} required (on the command line or in --config).")
    return script_args, config, peft_args


def _beta_auto_flag(argv: list[str]) -> list[str]:
    """`--beta auto` (beta is a float in AFTConfig) becomes `--beta_auto true`."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--beta=auto" or (argv[i] == "--beta" and i + 1 < len(argv) and argv[i + 1] == "auto"):
            out += ["--beta_auto", "true"]
            i += 1 if "=" in argv[i] else 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _check_output_dir(script_args: ScriptArguments, config) -> None:
    out = config.output_dir
    if out and os.path.isdir(out) and os.listdir(out) and not (script_args.overwrite_output_dir
                                                               or config.resume_from_checkpoint):
        raise AFTError(f"output_dir {out!r} already holds files: choose another, pass --overwrite_output_dir, or "
                       "--resume_from_checkpoint to continue a run.")


def train(argv: list[str]) -> dict:
    """Run one training job; returns a summary (metrics, scales, output dir)."""
    script_args, config, peft_args = parse_train_args(argv)
    _check_output_dir(script_args, config)
    baseline = None
    if script_args.baseline_dir:
        from .card import read_baseline

        baseline = read_baseline(script_args.baseline_dir, script_args.dataset_name)
    push = config.push_to_hub
    if push and not config.hub_model_id:
        raise AFTError("--push_to_hub needs --hub_model_id ORG/NAME (the Hub repo to create or update).")
    config.push_to_hub = False  # the Trainer would push at every save; the finished run is pushed once, below
    peft_config = peft_args.lora_config()
    if script_args.beta_auto and config.transfer == "none":
        raise AFTError("--beta auto searches the weight of the transfer loss: use --transfer aft, kd or rkd.")
    if config.world_size > 1:  # every process checks before any of them writes
        config.distributed_state.wait_for_everyone()

    import datasets
    import transformers

    from .data import Labels, check_columns, load_dataset_dict, pick_splits
    from .features import FEATURES_COLUMN, read_teacher_infos
    from .metrics import compute_classification_metrics
    from .trainer import AFTTrainer, with_teacher_features

    data = load_dataset_dict(script_args.dataset_name, script_args.dataset_config)
    train_set, eval_set = pick_splits(data, script_args.train_split, script_args.eval_split)
    for split in (train_set, eval_set):
        if split is not None:
            check_columns(split, script_args.image_column or script_args.text_column, script_args.label_column)
    labels = Labels.from_dataset(train_set, script_args.label_column)

    def load_student():
        return _load_student(script_args.model_name_or_path, labels, script_args.image_column)

    transformers.set_seed(config.seed)  # --seed also decides the new head's initial weights
    model, processor = load_student()

    infos = None
    if config.transfer != "none":
        if not config.teachers and FEATURES_COLUMN not in train_set.column_names:
            raise AFTError(f"--transfer {config.transfer} needs --teachers, or a dataset made by hf-aft features "
                           "(or use --transfer none).")
        train_set = with_teacher_features(train_set, config, script_args.text_column, script_args.image_column)
        infos = read_teacher_infos(train_set)

    def tokenize(batch):
        return processor(batch[script_args.text_column], truncation=True, max_length=script_args.max_length)

    def prepare(split):  # tokenize beside the features: a map would copy the wide feature column into a new file
        if split is None:
            return None
        if script_args.image_column is not None:  # images are preprocessed per batch by the trainer's ImageCollator
            return labels.encode(split)
        features = split.select_columns([FEATURES_COLUMN]) if FEATURES_COLUMN in split.column_names else None
        split = split.remove_columns(FEATURES_COLUMN) if features is not None else split
        split = labels.encode(split).map(tokenize, batched=True, desc="Tokenizing")
        return split if features is None else datasets.concatenate_datasets([split, features], axis=1)

    train_set, eval_set = prepare(train_set), prepare(eval_set)

    beta_search = None
    if script_args.beta_auto:
        from .beta_search import search_beta

        beta_search = search_beta(lambda: load_student()[0], config, train_set, validation_fraction=
                                  script_args.beta_validation_fraction, processing_class=processor,
                                  teacher_infos=infos, peft_config=peft_config, image_column=script_args.image_column)
        config.beta = beta_search["chosen_beta"]
        # Start the final run from the student every candidate started from (the new head's initialisation is
        # random and can decide whether a run leaves the class-prior plateau).
        transformers.set_seed(config.seed)
        model, _ = load_student()
        print(f"--beta auto: chose beta = {config.beta} (validation {beta_search['metric']}: " + ", ".join(
            f"{c['beta']:g}: {c['score']:.4f}" for c in beta_search["candidates"]) + ")")

    trainer = AFTTrainer(model=model, args=config, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=processor, teacher_infos=infos, peft_config=peft_config,
                         image_column=script_args.image_column,
                         compute_metrics=compute_classification_metrics)
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_metrics("train", result.metrics)
    summary = {"output_dir": os.path.abspath(config.output_dir), "train": result.metrics, "beta": config.beta,
               "scales": trainer.scale_summary(), "is_main_process": trainer.is_world_process_zero(),
               "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
               "all_params": sum(p.numel() for p in trainer.model.parameters())}
    if eval_set is not None:
        summary["eval"] = trainer.evaluate()
        trainer.save_metrics("eval", summary["eval"])
    trainer.save_state()
    if beta_search is not None:
        from .beta_search import save_beta_search

        if trainer.is_world_process_zero():
            save_beta_search(beta_search, config.output_dir)
        summary["beta_search"] = beta_search
    trainer.create_model_card(dataset_name=script_args.dataset_name, baseline_results=baseline,
                              beta_search=beta_search)
    if push and trainer.is_world_process_zero():
        from .hub import push_folder

        summary["hub_commit"] = push_folder(config.output_dir, config.hub_model_id, token=config.hub_token,
                                            private=config.hub_private_repo, revision=config.hub_revision)
    return summary


def _load_student(name: str, labels, image_column: str | None):
    """The student classifier, head sized and named from the labels, with its tokenizer or image processor."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    auto_model, auto_processor = ((AutoModelForImageClassification, AutoImageProcessor) if image_column else
                                  (AutoModelForSequenceClassification, AutoTokenizer))
    try:
        processor = auto_processor.from_pretrained(name)
        model = auto_model.from_pretrained(name, num_labels=len(labels.names), id2label=labels.id2label,
                                           label2id=labels.label2id, ignore_mismatched_sizes=True)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        kind = "image " if image_column else ""
        raise AFTError(f"could not load the {kind}student {name!r}: {first}") from None
    return model, processor


def _print_summary(summary: dict) -> None:
    eval_metrics = summary.get("eval", {})
    if eval_metrics:
        print(f"eval accuracy {eval_metrics.get('eval_accuracy', float('nan')):.4f}  "
              f"macro-F1 {eval_metrics.get('eval_macro_f1', float('nan')):.4f}")
    for teacher, stats in summary.get("scales", {}).items():
        print(f"scales {teacher}: mean {stats['mean']:.3f}, above 0.5: {stats['frac_above_half']:.1%}")
    if "trainable_params" in summary:
        print(f"trainable parameters {summary['trainable_params']:,} of {summary['all_params']:,}")
    print(f"student saved to {summary['output_dir']}")
    if "hub_commit" in summary:
        print(f"pushed to the Hub: {summary['hub_commit']}")


def run_train(argv: list[str]) -> None:
    summary = train(argv)
    if summary["is_main_process"]:
        _print_summary(summary)
        print(json.dumps({"output_dir": summary["output_dir"]}))


def run_demo(argv: list[str]) -> None:
    from .demo import run_demo

    run_demo(argv)


# One line per subcommand: name -> (help, "module:function" taking the remaining argv). Imported on use only.
COMMANDS = {
    "train": ("train a student (hf-aft train --help)", "hf_aft.cli:run_train"),
    "demo": ("run the offline demo (hf-aft demo)", "hf_aft.cli:run_demo"),
    "features": ("compute teacher features once and save them with the dataset", "hf_aft.features_cli:run_features"),
    "push": ("push a trained student and its card to the Hub (hf-aft push --help)", "hf_aft.hub:run_push"),
    "rank-teachers": ("score candidate teachers on a task before training", "hf_aft.ranking:run_rank_teachers"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ",".join(COMMANDS)
        print(f"usage: hf-aft {{{names}}} ...\n" + "\n".join(f"  {c:15s}{h}" for c, (h, _) in COMMANDS.items()))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, function_name = COMMANDS[argv[0]][1].split(":")
    try:
        getattr(importlib.import_module(module_name), function_name)(argv[1:])
    except AFTError as error:
        if os.environ.get("HF_AFT_DEBUG"):
            raise
        print(f"hf-aft: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
