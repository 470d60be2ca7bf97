"""`hf-aft demo`: the offline demo. A teacher that knows more than the student (all-mpnet-base-v2), a few hundred
labelled Rotten Tomatoes snippets, more unlabelled ones, and a test split of other movies, all from PyPI packages
(see `hf_aft.demo`). Trains plain fine-tuning (STL) and AFT with the unlabelled rows (probe distillation on, the
default with unlabelled data) with `hf-aft train`, then prints STL, the teacher's linear probe and AFT on the test
split, and how much of the gap between STL and the probe AFT closed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AFTError
from .parsing import parse


@dataclass
class DemoArguments:
    workdir: str = field(default="runs/demo", metadata={"help": "Where data, students and results go."})
    beta: float | None = field(default=None, metadata={"help": "AFT's beta (default: AFTConfig's)."})
    n_train: int = field(default=300, metadata={"help": "Labelled training examples."})
    n_unlabeled: int = field(default=800, metadata={"help": "Unlabelled examples (movies disjoint from test's)."})
    n_test: int = field(default=800, metadata={"help": "Test examples (movies disjoint from training's)."})
    max_steps: int = field(default=150, metadata={
        "help": "Optimizer steps of both runs (batch 32): 3 epochs of the AFT run's mixed epoch (300 labelled rows "
        "as half of each batch beside 800 unlabelled ones), and the same for STL (bench/semi.py's protocol)."})
    seed: int = field(default=0, metadata={"help": "Seed of both runs."})


# The fewest rows each size option can take (`check_sizes`), and why: a smaller demo fails in `hf-aft train`, after
# the data, the teacher and the student's initial weights are written, with a message about a saved split.
MINIMUM_ROWS = {
    "n_train": (10, "the teacher's probe cross-fits both classes, each with 2 or more labelled rows"),
    "n_test": (1, "the students and the probe are scored on the test split"),
    "n_unlabeled": (1, "the AFT run trains with the unlabelled rows"),
}


def check_sizes(args: DemoArguments) -> None:
    """Each size option is at least its `MINIMUM_ROWS`, before anything is written."""
    for name, (fewest, why) in MINIMUM_ROWS.items():
        given = getattr(args, name)
        if given < fewest:
            default = DemoArguments.__dataclass_fields__[name].default
            raise AFTError(f"--{name} {given} is too few: {why}; pass --{name} {fewest} or more (default {default}).")


def gap_line(stl: float, probe: float | None, aft: float) -> str:
    """What AFT captured of the gap between the student alone (STL) and the teacher's probe."""
    if probe is None:
        return "the teacher's probe was not measured (no cost report)"
    if probe <= stl:
        return f"the teacher's probe ({probe:.4f}) is not above STL: there was no gap to close"
    return f"AFT closed {(aft - stl) / (probe - stl):.0%} of the gap between STL and the teacher's probe"


def print_results(aft: dict, stl: dict, probe: float | None) -> None:
    """The demo's table: STL, the teacher's probe and AFT on the test split; what AFT captured; where students went."""
    terms = aft.get("terms") or {}
    print(f"\n=== hf-aft demo: Rotten Tomatoes (movie-disjoint split), {terms.get('labeled_rows')} labelled and "
          f"{terms.get('unlabeled_rows')} unlabelled snippets; teacher all-mpnet-base-v2, student: all-MiniLM-L6-v2's "
          "first 3 layers ===")
    print(f"{'':<50}{'test accuracy':>15}")
    print(f"{'STL (plain fine-tuning, labelled rows)':<50}{stl['eval']['eval_accuracy']:>15.4f}")
    print(f"{'teacher probe (logistic regression, 768-d)':<50}{probe if probe is not None else float('nan'):>15.4f}")
    label = f"AFT (beta {aft['beta']:g}) + probe distillation + unlabelled"
    print(f"{label:<50}{aft['eval']['eval_accuracy']:>15.4f}")
    print(gap_line(stl["eval"]["eval_accuracy"], probe, aft["eval"]["eval_accuracy"]))
    if aft.get("terms_note"):
        print(aft["terms_note"])
    print(f"AFT student saved to {shown_path(aft['output_dir'])} (its README.md is the model card)")
    print(f"STL student saved to {shown_path(stl['output_dir'])}")


def shown_path(path: str) -> str:
    """`path` relative to the working directory when it lies under it (as the default --workdir was given)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def teacher_probe(output_dir: str) -> float | None:
    """The teacher's linear-probe accuracy on the eval split, from the run's cost report."""
    path = Path(output_dir) / "cost_report.json"
    if not path.exists():
        return None
    teachers = json.loads(path.read_text()).get("teachers") or [{}]
    return teachers[0].get("probe_accuracy")


def run(argv: list[str] | None = None) -> dict:
    (args,) = parse((DemoArguments,), argv or [], "hf-aft demo", __doc__)
    check_sizes(args)

    from ..demo import minilm_path, mpnet_path, rotten_tomatoes, truncated_student
    from .train import train

    work = Path(args.workdir)
    teacher = mpnet_path(work / "teachers")  # the models first: a missing one is refused before anything is written
    student = truncated_student(minilm_path(), work / "student-init")
    data_dir = work / f"data-{args.n_train}-{args.n_test}-{args.n_unlabeled}"
    if not (data_dir / "dataset_dict.json").exists():
        rotten_tomatoes(args.n_train, args.n_test, seed=0, n_unlabeled=args.n_unlabeled).save_to_disk(str(data_dir))
    common = ["--model_name_or_path", str(student), "--dataset_name", str(data_dir),
              "--max_steps", str(args.max_steps), "--per_device_train_batch_size", "32",
              "--per_device_eval_batch_size", "128", "--learning_rate", "2e-4", "--max_length", "64",
              "--seed", str(args.seed), "--report_to", "none", "--overwrite_output_dir"]
    beta = [] if args.beta is None else ["--beta", str(args.beta)]
    stl_dir, aft_dir = work / "student-stl", work / "student-aft"
    results = {}
    print("hf-aft demo, run 1 of 2: plain fine-tuning (STL) on the labelled rows, the baseline", flush=True)
    results["none"] = train(common + ["--transfer", "none", "--output_dir", str(stl_dir), "--skip_cost_report"])
    print("hf-aft demo, run 2 of 2: AFT with the unlabelled rows (the teacher runs once; its features are cached)",
          flush=True)
    results["aft"] = train(common + ["--teachers", str(teacher), "--teacher_max_length", "64", "--transfer", "aft",
                                     "--output_dir", str(aft_dir), "--baseline_dir", str(stl_dir),
                                     "--unlabeled_dataset", str(data_dir), "--unlabeled_split", "unlabeled"] + beta)
    probe = teacher_probe(results["aft"]["output_dir"])
    print_results(results["aft"], results["none"], probe)
    with open(work / "demo_results.json", "w") as f:
        json.dump({"teacher_probe": probe, **{k: {"eval": v["eval"], "terms": v.get("terms"),
                                                   "output_dir": v["output_dir"]} for k, v in results.items()}},
                  f, indent=2)
    return results
