"""`hf-aft features`: compute the teachers' features once (e.g. on a GPU box) and save them with the dataset, so
that `hf-aft train --dataset_name DIR` trains anywhere without loading any teacher.

The output is a `save_to_disk` DatasetDict: every split of the input, the chosen splits with the
`teacher_features` column and its provenance (each teacher's id, resolved revision, pooling, width), which
`hf-aft train` reads back and reports per teacher. The provenance is also written as `teachers.json` beside it.
`--push_to_hub` uploads the folder to a Hub dataset repo (hub.push_dataset_folder), from which `hf-aft train
--dataset_name ORG/NAME` loads it with that provenance.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from .errors import AFTError

PROVENANCE_FILE = "teachers.json"


@dataclass
class FeatureArguments:
    """What to compute features for, and where they go."""

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
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds files."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Also push the saved folder to a Hub dataset repo (--hub_model_id)."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub dataset repo to push to: ORG/NAME."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})


def _teacher_options_class():
    """AFTConfig's teacher fields (same names, defaults and help) as a dataclass of their own: parsed here without
    the hundred training flags, defined once."""
    from .config import TEACHER_OPTIONS, AFTConfig

    fields = []
    for f in dataclasses.fields(AFTConfig):
        if f.name in TEACHER_OPTIONS:
            copy = field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
            fields.append((f.name, f.type, copy))
    return dataclasses.make_dataclass("TeacherOptions", fields)


def parse_feature_args(argv: list[str]):
    from transformers import HfArgumentParser

    from .config import check_teacher_options

    parser = HfArgumentParser((FeatureArguments, _teacher_options_class()), prog="hf-aft features")
    args, teachers = parser.parse_args_into_dataclasses(argv)
    check_teacher_options(teachers)
    if not teachers.teachers:
        raise AFTError("--teachers is required: the Hub ids or local folders whose features to compute.")
    if args.push_to_hub and not args.hub_model_id:
        raise AFTError("--push_to_hub needs --hub_model_id ORG/NAME (a dataset repo).")
    out = args.output_dir
    if os.path.isdir(out) and os.listdir(out) and not args.overwrite_output_dir:
        raise AFTError(f"output_dir {out!r} already holds files: choose another or pass --overwrite_output_dir.")
    return args, teachers


def compute_features(argv: list[str]) -> dict:
    """Run `hf-aft features`; returns a summary: output dir, rows per split, teachers."""
    from .config import extraction_kwargs
    from .data import load_dataset_dict
    from .features import extract_teacher_features, read_teacher_infos

    args, teachers = parse_feature_args(argv)
    data = load_dataset_dict(args.dataset_name, args.dataset_config)
    missing = [split for split in args.splits if split not in data]
    if missing:
        raise AFTError(f"split(s) {missing} not found; the dataset has splits {list(data)}: pass --splits.")
    for split in args.splits:
        data[split] = extract_teacher_features(data[split], teachers.teachers, text_column=args.text_column,
                                               image_column=args.image_column, **extraction_kwargs(teachers))
    infos = [dataclasses.asdict(info) for info in read_teacher_infos(data[args.splits[0]])]
    data.save_to_disk(args.output_dir)
    with open(os.path.join(args.output_dir, PROVENANCE_FILE), "w") as f:
        json.dump({"teachers": infos, "splits": args.splits, "text_column": args.text_column,
                   "image_column": args.image_column}, f, indent=2)
    if args.push_to_hub:
        from .hub import push_dataset_folder

        push_dataset_folder(args.output_dir, args.hub_model_id, private=args.hub_private_repo or None)
    return {"output_dir": os.path.abspath(args.output_dir), "rows": {s: len(d) for s, d in data.items()},
            "teachers": infos}


def run_features(argv: list[str]) -> None:
    summary = compute_features(argv)
    for info in summary["teachers"]:
        print(f"teacher {info['name']} @ {info['revision']}: {info['pooling']} pooling, {info['dim']} features")
    print(f"rows: {summary['rows']}; saved to {summary['output_dir']}")
