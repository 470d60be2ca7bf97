"""`hf-aft rank-teachers`: score candidate teachers on a task before any training (`hf_aft.ranking`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .parsing import check_new_output, parse, write_new_file

DESCRIPTION = """Score each candidate teacher on the training split, with no student training: the LogME evidence (You
et al., ICML 2021) and a cross-validated linear probe of its features, beside its width and extraction time. The
student's own initial features get the same scores: a teacher that does not beat them has little to transfer. The
features share training's cache, so training afterwards runs no teacher again.

  hf-aft rank-teachers --teachers T1 T2 T3 --model_name_or_path STUDENT --dataset_name DATA"""


@dataclass
class RankArguments:
    _argument_group_name = "data and output"

    dataset_name: str = field(metadata={"help": "As for hf-aft train."})
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration name."})
    train_split: str = field(default="train", metadata={"help": "The split that is scored (the one you train on)."})
    text_column: str = field(default="text", metadata={"help": "Column the text teachers read."})
    image_column: str | None = field(default=None, metadata={"help": "Column holding the images, for image teachers "
                                                                     "(as for hf-aft train)."})
    label_column: str = field(default="label", metadata={"help": "Column holding the label: a class, a list of "
                                                                     "classes or a number."})
    problem_type: str | None = field(default=None, metadata={"help": "As for hf-aft train (default: from the label "
                                                                       "column)."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The student: its initial features are scored too."}
    )
    folds: int = field(default=5, metadata={"help": "Cross-validation folds of the probe."})
    seed: int = field(default=42, metadata={"help": "Seed of the probe's folds: 42, hf-aft train's default --seed, "
                                                   "so that both cut the same folds and report the same probe."})
    output_file: str | None = field(
        default=None, metadata={"help": "Where the JSON goes (default: OUTPUT_DIR/teacher_ranking.json); an existing "
                                "file is never overwritten."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder for teacher_ranking.json."})


def run(argv: list[str]) -> dict:
    from ..claims import claimed
    from ..config import TeacherArguments
    from ..errors import AFTError
    from ..outputs import check_creatable

    args, options = parse((RankArguments, TeacherArguments), argv, "hf-aft rank-teachers", DESCRIPTION)
    if not options.teachers:
        raise AFTError("--teachers is required: the candidate teachers to score.")
    if args.folds < 2:
        raise AFTError(f"--folds must be >= 2 (got {args.folds}).")
    if args.output_dir:
        check_creatable(args.output_dir)
    output = args.output_file or os.path.join(args.output_dir or ".", "teacher_ranking.json")
    check_new_output(output)
    check_creatable(os.path.dirname(os.path.abspath(output)), "--output_file's folder")
    _check_output_apart(output, args, options.teachers)
    with claimed(output, "rank-teachers", is_file=True, flag="--output_file"):
        return _rank(args, options, output)


def _check_output_apart(output: str, args: RankArguments, teachers: list[str]) -> None:
    """As hf-aft train and features refuse such an output dir: the ranking goes into no folder the command reads (a
    teacher's or the student's: their content hash, the revision runs record, would change; a data folder, whose
    files it would join), nor into a run, model or saved features (a finished run's audit would find it added)."""
    from ..errors import AFTError
    from ..outputs import held_outputs
    from ..teachers import parse_teacher, split_gguf

    flag = "--output_file" if args.output_file else "--output_dir"
    folder = os.path.realpath(os.path.dirname(os.path.abspath(output)))
    subject = (f"--output_file {args.output_file!r} (its folder {folder!r})" if args.output_file else
               f"--output_dir {args.output_dir!r}" if args.output_dir else "the current folder (no --output_dir)")
    reads = [("--teachers", parse_teacher(split_gguf(spec)[0])[0]) for spec in teachers]
    reads += [("--model_name_or_path", args.model_name_or_path)] if args.model_name_or_path else []
    reads += [("--dataset_name", part) for part in args.dataset_name.split(",")]
    for option, path in reads:
        given = os.path.isdir(os.path.expanduser(path))  # else a data file's or glob's folder: that folder only
        real = os.path.realpath(_data_folder(path) if option == "--dataset_name" else os.path.expanduser(path))
        if os.path.isdir(real) and (folder == real or given and folder.startswith(real.rstrip(os.sep) + os.sep)):
            where = "the folder of" if folder == real else "inside"
            whose = f"{path!r}" + ("" if given else f" (its folder {real!r})")
            raise AFTError(f"{subject} is {where} {option} {whose}, which this command reads (teacher_ranking.json "
                           f"there would change it): choose a {flag} outside it.")
    for above in [folder, *map(str, Path(folder).parents)]:  # a run's subfolder is the run's: audit finds it
        held = held_outputs(above) if above == folder else _hf_aft_output(above)
        if held:
            what = "a training run or model" if "run" in held else "saved features"
            where = "holds" if above == folder else f"is inside {above!r}, which holds"
            raise AFTError(f"{subject} {where} {what} ({next(iter(held.values()))}), which the ranking would be added "
                           f"to (hf-aft audit, push): choose a {flag} outside it.")


def _hf_aft_output(folder: str) -> dict[str, str]:
    """A finished run, or features hf-aft saved, in `folder` (above the output, where a config.json or a
    dataset_dict.json alone may be anyone's)."""
    from ..feature_dataset import PROVENANCE_FILE
    from ..finished_marker import COMPLETE_NAME

    if os.path.isfile(os.path.join(folder, COMPLETE_NAME)):
        return {"run": COMPLETE_NAME}
    return {"features": PROVENANCE_FILE} if os.path.isfile(os.path.join(folder, PROVENANCE_FILE)) else {}


def _data_folder(part: str) -> str:
    """The folder --dataset_name reads for one of its parts: a data file's or a glob's folder (the ranking there
    would join the files a later --dataset_name FOLDER loads; its subfolders are left to the user, as that folder may
    be any working folder), else the part itself."""
    import glob

    path = os.path.abspath(os.path.expanduser(part.strip()))
    if glob.has_magic(path):  # the folder above the first name with a wildcard
        names = path.split(os.sep)
        return os.sep.join(names[: next(i for i, name in enumerate(names) if glob.has_magic(name))]) or os.sep
    return os.path.dirname(path) if os.path.isfile(path) else path


def _rank(args: RankArguments, options, output: str) -> dict:
    import numpy as np

    from ..data import load_labelled_splits
    from ..provenance import current_revision
    from ..ranking import format_table, rank_teachers
    from ..student import check_student_source
    from ..teachers import split_gguf

    splits = load_labelled_splits(args.dataset_name, args.dataset_config, args.train_split, None,
                                  args.image_column or args.text_column, args.label_column,
                                  problem_type=args.problem_type)
    problem_type, text_column = splits.labels.problem_type, args.text_column
    if problem_type == "token_classification":  # per-word features of the words column, each word's class
        labels, text_column = splits.labels.class_ids(splits.train), splits.labels.words_column
    else:  # class ids, multi-hot rows or targets; the features come from the raw split, as training's do
        labels = np.asarray(splits.labels.encode(splits.train)["labels"])
    if args.model_name_or_path:  # a mistyped student folder: before the teachers' passes
        check_student_source(args.model_name_or_path, args.image_column)
    for spec in options.teachers:  # each teacher that is no local path found before any teacher runs
        if not os.path.exists(split_gguf(spec)[0]):
            current_revision(spec)
    rows = rank_teachers(splits.train, labels, options.teachers, options, args.model_name_or_path, args.folds,
                         args.seed, text_column, problem_type=problem_type, names=splits.labels.names,
                         image_column=args.image_column)
    result = {"dataset": args.dataset_name, "split": args.train_split, "examples": len(splits.train),
              "problem_type": problem_type,
              "folds": args.folds, "teacher_max_length": options.teacher_max_length, "rows": rows}
    print(format_table(rows, args.folds))
    write_new_file(output, json.dumps(result, indent=2))
    print(f"ranking written to {output}")
    return result
