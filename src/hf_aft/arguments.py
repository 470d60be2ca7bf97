"""The arguments of one training run that `AFTConfig` (how to train) does not hold: `ScriptArguments` (what to train
on: the student, the dataset, its columns and splits) and `PeftArguments` (whether the student is a LoRA adapter),
read by `HfArgumentParser` for `hf-aft train` and taken by `pipeline.train_student` (TRL's `ScriptArguments` /
`ModelConfig` convention)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

from .errors import AFTError
from .groups import MIN_GROUP_ROWS
from .validation_split import DEFAULT_VALIDATION_FRACTION


@dataclass
class ScriptArguments:
    """What to train on: the student, the dataset and its columns."""

    _argument_group_name = "data and student"

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The student: a Hub id or a local folder of a transformers model (required)."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A Hub dataset id, a folder written by save_to_disk (or hf-aft features), a folder of "
                  "data files, or csv/tsv/json/jsonl/parquet file(s), comma-separated or a glob such as "
                  "'data/*.jsonl' (required)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the input text."})
    image_column: str | None = field(
        default=None,
        metadata={"help": "Column holding images (PIL images, arrays or file paths): trains an image classifier "
                  "(AutoModelForImageClassification, preprocessed on the fly by its own AutoImageProcessor, which is "
                  "saved with it). Image teachers read this column, text teachers --text_column."},
    )
    label_column: str = field(
        default="label", metadata={"help": "Column holding the label: a class, a list of classes or a number."}
    )
    problem_type: str | None = field(
        default=None,
        metadata={"help": "What the student predicts (docs/guides/multi-label-regression.md; "
                  "default: from the label column)."},
    )
    unlabeled_dataset: str | None = field(
        default=None,
        metadata={"help": "Rows without labels from the same source (as for --dataset_name: a Hub id, a save_to_disk "
                  "folder, data files); the same text/image column, any label column ignored. Teacher features are "
                  "made for them too; every batch mixes them in (--labeled_fraction) for the transfer and "
                  "distillation terms, and --distill auto turns probe distillation on."},
    )
    unlabeled_split: str = field(default="train", metadata={"help": "Split of --unlabeled_dataset to use."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={
        "help": "Split to evaluate on (default: the first of test, validation, valid, eval present)."})
    max_length: int = field(default=128, metadata={"help": "The student truncates texts to this many tokens."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds files (an earlier "
                                        "run's checkpoint-* folders are removed once training starts)."}
    )
    baseline_dir: str | None = field(
        default=None,
        metadata={"help": "Output dir of a plain fine-tuning run (--transfer none) on the same data: its eval results "
                  "appear next to this model's in the model card."},
    )
    beta_auto: bool = field(default=False, metadata={"help": argparse.SUPPRESS})  # what `--beta auto` sets
    beta_validation_split: str | None = field(
        default=None, metadata={"help": "Split to choose beta on with --beta auto (default: validation or valid, when "
                                "it is not the eval split; none: hold out part of the training data instead)."}
    )
    beta_validation_fraction: float = field(
        default=DEFAULT_VALIDATION_FRACTION,
        metadata={"help": "Fraction of the training data held out to choose beta with --beta auto, when "
                  "the dataset has no validation split besides the eval split."}
    )
    group_column: list[str] | None = field(
        default=None,
        metadata={"help": "Eval columns to report results by, per group (docs/guides/operating.md)."},
    )
    group_min_rows: int = field(
        default=MIN_GROUP_ROWS,
        metadata={"help": "Groups with fewer eval rows are not judged (too small)."},
    )
    skip_cost_report: bool = field(
        default=False, metadata={"help": "Do not measure cost and benefit (cost_report.json: sizes, CPU latency, "
                                 "teachers' probe accuracy): for very large teachers."}
    )


@dataclass
class PeftArguments:
    """A LoRA student (TRL's `ModelConfig` flag names): only the adapter and the classification head train."""

    _argument_group_name = "LoRA student"

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
        """The `LoraConfig`, or None without --use_peft (refused then: a LoRA option given, which would change
        nothing)."""
        if not self.use_peft:
            given = [f"--{f.name}" for f in fields(self)
                     if f.name != "use_peft" and getattr(self, f.name) != f.default]
            if given:
                raise AFTError(f"{', '.join(given)} shape{'s' * (len(given) == 1)} a LoRA adapter, which only "
                               "--use_peft trains: add --use_peft, or drop them (all of the student's weights train).")
            return None
        if self.lora_r < 1:
            raise AFTError(f"--lora_r must be >= 1 (got {self.lora_r}).")
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.lora_target_modules, task_type="SEQ_CLS")
