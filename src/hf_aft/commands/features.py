"""`hf-aft features`: compute the teachers' features once (e.g. on a GPU box) and save them with the dataset, so that
`hf-aft train --dataset_name DIR` trains anywhere without loading any teacher."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .parsing import parse

DESCRIPTION = """Run each teacher once over a dataset and save the dataset with a `teacher_features` column and its
provenance (teacher ids, resolved revisions, pooling, widths) as a save_to_disk folder, optionally pushed to a Hub
dataset repo. `hf-aft train --dataset_name FOLDER_OR_REPO` then trains without loading any teacher.

  hf-aft features --teachers T1 [T2 ...] --dataset_name DATA --output_dir FEATURES [--splits train test]
      [--unlabeled_dataset POOL [--unlabeled_split train]]   (saved, with features, as the split `unlabeled`)"""


@dataclass
class FeatureArguments:
    """What to compute features for, and where they go."""

    _argument_group_name = "data and output"

    dataset_name: str = field(
        metadata={"help": "A Hub dataset id, a folder written by save_to_disk, or csv/json/parquet file(s)."}
    )
    output_dir: str = field(metadata={"help": "Folder the dataset with its features is saved to (save_to_disk)."})
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column the text teachers read."})
    image_column: str | None = field(
        default=None, metadata={"help": "Column the image teachers read (PIL images, arrays or file paths)."}
    )
    splits: list[str] = field(
        default_factory=lambda: ["train"],
        metadata={"help": "Splits that get features (training reads them from the train split only); the other "
                  "splits are saved as they are."},
    )
    unlabeled_dataset: str | None = field(
        default=None,
        metadata={"help": "Unlabelled rows (as for --dataset_name) to save with features as the split `unlabeled`, "
                  "for hf-aft train --unlabeled_dataset OUTPUT_DIR --unlabeled_split unlabeled. No row may be in "
                  "a split other than train (leakage); any label column is dropped."},
    )
    unlabeled_split: str = field(default="train", metadata={"help": "Split of --unlabeled_dataset to use."})
    label_column: str = field(default="label", metadata={"help": "The label column, dropped from unlabelled rows."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds files."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Also push the saved folder to a Hub dataset repo (--hub_model_id)."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub dataset repo to push to: ORG/NAME."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})


def parse_feature_args(argv: list[str]):
    from ..config import TeacherArguments
    from ..errors import AFTError
    from ..hub_reach import check_can_push
    from ..option_checks import check_pool_label_column, check_pool_split
    from ..outputs import check_output_dir

    args, teachers = parse((FeatureArguments, TeacherArguments), argv, "hf-aft features", DESCRIPTION)
    if not teachers.teachers:
        raise AFTError("--teachers is required: the Hub ids or local folders whose features to compute.")
    check_pool_split(args)
    check_pool_label_column(args)
    if args.push_to_hub and not args.hub_model_id:
        raise AFTError("--push_to_hub needs --hub_model_id ORG/NAME (a dataset repo).")
    if args.push_to_hub:  # before the teachers run, not after
        check_can_push(args.hub_model_id, f"run `hf-aft push {args.output_dir} --hub_model_id {args.hub_model_id}` "
                       "after extraction")
    check_output_dir(args.output_dir, args.overwrite_output_dir, writes="features", inputs={
        "--dataset_name": args.dataset_name, "--unlabeled_dataset": args.unlabeled_dataset,
        "--teachers": teachers.teachers})
    return args, teachers


def compute_features(argv: list[str]) -> dict:
    """Run `hf-aft features`; returns a summary: output dir, rows per split, teachers."""
    from ..claims import claimed

    args, teachers = parse_feature_args(argv)
    with claimed(args.output_dir, "features") as claim:
        return _compute(args, teachers, claim)


def _compute(args: FeatureArguments, teachers, claim) -> dict:
    from ..columns import check_columns
    from ..data import load_dataset_dict
    from ..data_files import missing_split
    from ..feature_dataset import save_feature_dataset
    from ..hub import push_folder

    data = load_dataset_dict(args.dataset_name, args.dataset_config)
    for split in args.splits:
        if split not in data:
            raise missing_split(split, list(data), args.dataset_name, "name those with --splits")
        if args.image_column is None and args.text_column not in data[split].column_names:
            check_columns(data[split], args.text_column)  # named as hf-aft train names it: --text_column COLUMN
    unlabeled = _load_unlabeled(args, data)
    infos = save_feature_dataset(data, args.splits, teachers, args.output_dir, args.text_column, args.image_column,
                                 unlabeled)
    claim.complete = True  # a failed push below keeps the saved folder, for `hf-aft push` to retry
    if unlabeled is not None:
        data["unlabeled"] = unlabeled
    if args.push_to_hub:
        push_folder(args.output_dir, args.hub_model_id, repo_type="dataset", private=args.hub_private_repo or None)
    return {"output_dir": os.path.abspath(args.output_dir), "rows": {s: len(d) for s, d in data.items()},
            "teachers": infos, "with_features": [*args.splits, *(["unlabeled"] if unlabeled is not None else [])]}


def _load_unlabeled(args: FeatureArguments, data):
    """--unlabeled_dataset's rows, checked against every split but train (those are evaluated on), or None."""
    if not args.unlabeled_dataset:
        return None
    from ..errors import AFTError
    from ..feature_dataset import UNLABELED_SPLIT
    from ..unlabeled_data import load_unlabeled

    if UNLABELED_SPLIT in data:  # before the pool is compared with it as a held-out split
        raise AFTError(f"the dataset already has a split named {UNLABELED_SPLIT!r}: the unlabelled pool would replace "
                       "it; drop --unlabeled_dataset, or rename that split.")
    labelled = data[args.splits[0]]
    held_out = {name: split for name, split in data.items() if name != "train"}
    return load_unlabeled(args.unlabeled_dataset, args.unlabeled_split, args.image_column or args.text_column,
                          args.label_column, labelled, held_out)


def run(argv: list[str]) -> None:
    summary = compute_features(argv)
    for info in summary["teachers"]:
        print(f"teacher {info['name']} @ {info['revision']}: {info['pooling']} pooling, {info['dim']} features"
              + (" (cache)" if info.get("from_cache") else ""))
    others = [split for split in summary["rows"] if split not in summary["with_features"]]
    print(f"rows: {summary['rows']}; teacher features in: {', '.join(summary['with_features'])}"
          + (" (the other splits are read raw)" if others else "") + f"; saved to {summary['output_dir']}")
