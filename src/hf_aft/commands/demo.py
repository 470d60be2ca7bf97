"""`hf-aft demo`: the offline demo. A real teacher (all-MiniLM-L6-v2) and real labelled data (Rotten Tomatoes critics'
snippets, split by movie), both from PyPI packages (see `hf_aft.demo`). Trains an AFT student and its plain
fine-tuning (STL) baseline with `hf-aft train`, then prints both test accuracies and the learned scales."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .parsing import parse


@dataclass
class DemoArguments:
    workdir: str = field(default="runs/demo", metadata={"help": "Where data, students and results go."})
    beta: float | None = field(default=None, metadata={"help": "AFT's beta (default: AFTConfig's)."})
    epochs: float = field(default=3, metadata={"help": "Training epochs of both runs."})
    n_train: int = field(default=2000, metadata={"help": "Training examples."})
    n_test: int = field(default=1000, metadata={"help": "Test examples (movies disjoint from training's)."})
    seed: int = field(default=0, metadata={"help": "Seed of both runs."})


def print_results(aft: dict, stl: dict) -> None:
    """The demo's table: both test accuracies, the learned scales, where the students went."""
    print("\n=== hf-aft demo: Rotten Tomatoes (movie-disjoint split), teacher all-MiniLM-L6-v2, "
          "student: its first 3 layers ===")
    print(f"{'run':<16}{'test accuracy':>15}{'macro-F1':>10}")
    for label, run in (("STL", stl), (f"AFT (beta {aft['beta']})", aft)):
        print(f"{label:<16}{run['eval']['eval_accuracy']:>15.4f}{run['eval']['eval_macro_f1']:>10.4f}")
    for stats in aft["scales"].values():
        print(f"learned scales of the teacher's 384 features: mean {stats['mean']:.3f}, "
              f"{stats['frac_above_half']:.1%} of them above 0.5 (all start at 0.5)")
    print(f"AFT student saved to {aft['output_dir']}")
    print(f"STL student saved to {stl['output_dir']}")


def run(argv: list[str] | None = None) -> dict:
    (args,) = parse((DemoArguments,), argv or [], "hf-aft demo", __doc__)

    from ..demo import minilm_path, rotten_tomatoes, truncated_student
    from .train import train

    work = Path(args.workdir)
    data_dir = work / "data"
    if not (data_dir / "dataset_dict.json").exists():
        rotten_tomatoes(args.n_train, args.n_test, seed=0).save_to_disk(str(data_dir))
    teacher = minilm_path()
    student = truncated_student(teacher, work / "student-init")
    common = ["--model_name_or_path", str(student), "--dataset_name", str(data_dir), "--teachers", str(teacher),
              "--num_train_epochs", str(args.epochs), "--per_device_train_batch_size", "32",
              "--per_device_eval_batch_size", "128", "--learning_rate", "2e-4", "--max_length", "64",
              "--teacher_max_length", "64", "--seed", str(args.seed), "--report_to", "none",
              "--overwrite_output_dir"]
    beta = [] if args.beta is None else ["--beta", str(args.beta)]
    stl_dir, aft_dir = work / "student-stl", work / "student-aft"
    results = {}
    print("hf-aft demo, run 1 of 2: plain fine-tuning (STL), the baseline", flush=True)
    results["none"] = train(common + ["--transfer", "none", "--output_dir", str(stl_dir)])
    print("hf-aft demo, run 2 of 2: AFT (the teacher runs once; its features are cached)", flush=True)
    results["aft"] = train(common + ["--transfer", "aft", "--output_dir", str(aft_dir), "--baseline_dir", str(stl_dir)]
                           + beta)

    print_results(results["aft"], results["none"])
    with open(work / "demo_results.json", "w") as f:
        json.dump({k: {"eval": v["eval"], "scales": v["scales"], "output_dir": v["output_dir"]}
                   for k, v in results.items()}, f, indent=2)
    return results
