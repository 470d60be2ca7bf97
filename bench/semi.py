"""Unlabelled data and probe distillation (issue 22): does a small student get what the teacher knows?

Per suite, labelled-set size and seed (paired by seed), test accuracy of:
  stl                  plain fine-tuning
  probe                the teacher's linear probe (logistic regression on its cached features of the labelled rows,
                       its C chosen by cross-validated log-loss: the probe `--distill probe` fits; rows written
                       before that change, with C = 1, are `probe-c1`)
  aft0.1, auto         AFT at a fixed beta / with --beta auto
  distill              probe distillation alone (--transfer none --distill probe)
  aft0.1+distill       AFT + probe distillation
  setfit               the peer: SetFit's DistillationTrainer (teacher fine-tuned SetFit-style on the labelled rows,
                       distilled into the student on the unlabelled pool; text suites; `pip install --no-deps
                       setfit==1.2.0`, which `make bench-setup` does)
  probe+tuned          the probe on the features of the teacher tuned SetFit-style on the labelled rows (setfit's
                       teacher, its body saved as a transformers folder); `+tuned` in any training method: that
                       tuned teacher instead of the suite's (its features, its probe's targets): a task-tuned teacher
and each training method with `+u`: the same plus the unlabelled pool (--unlabeled_dataset); `+uaug2`: the pool plus
2 augmented copies of each pool text; `+aug8`: plus 8 augmented
copies of each labelled text as unlabelled rows (--augment_copies 8); `+gen800`: plus 800 texts written by
SmolLM2-135M-Instruct prompted with labelled texts (--generate_texts 800). `+lf0.3` sets
--labeled_fraction 0.3 (default 0.5; `+lfown`: the two sets' own share, the default before it was measured); `+x2`
twice the steps; `+t2` / `+w2` a distillation temperature / weight of 2; `+lr1e-4` a learning rate of 1e-4
instead of the suite's; `+cvt` the targets' probe with its C chosen by cross-validated log-loss, as the
teacher-probe column's (hf-aft's default since 2026-12-06: the rows of distillation methods without `+cvt`
written before it had C = 1), `+c1` at C = 1; `+ep` the steps hf-aft's default schedule gives with the pool (the
suite's epochs over the mixed epoch: text 3, vision 8), at least the full run's; `+ep2` twice that. Otherwise
every run at every size gets the full run's optimizer steps (3 epochs of 2,000 texts at batch 32 = 188 for text;
8 epochs of 2,000 images at batch 64 = 256 for vision), so unlabelled rows cost no extra steps: compare at equal
compute.

    python bench/semi.py --suite rt --sizes 100,300,1000 --methods stl,probe,distill+u,aft0.1+distill+u
    python bench/semi.py --suite vision --seeds 0 1 2                   # the default methods and sizes

Suites: `rt` (Rotten Tomatoes, the demo's movie-disjoint split, all-mpnet-base-v2 teacher, MiniLM-L6's first 3
layers as student; the schedule of bench/quality.py), `party` (bench/beta_auto.py's speaker-disjoint convention
sentences, same teacher and student), `bbc` (BBC News headlines by section, 5 classes, 600 train / 600 test at
random, the other 896 the pool; same teacher and student), `rt-minilm` (Rotten Tomatoes with the all-MiniLM-L6-v2
teacher, whose probe is below the fine-tuned student at 2,000 labels: the check that a weak teacher does no harm),
`rt6` (Rotten Tomatoes with all 6 layers of MiniLM-L6 as the student: does a larger student take more of the gap?),
`rt-mpnet3` (Rotten Tomatoes with the teacher's own first 3 layers as the student, DistilBERT-style: does a student
that starts from the teacher take more?),
`vision` (animal-mnist, ImageNet MobileNetV2 teacher, a 4-layer ViT from scratch; bench/vision_quality.py's
schedule), `vision-cnn` (the same with a ResNet of the ViT's size from scratch: a convolutional student). The
unlabelled pool: `--pool` rows (default 2,000; bbc has 896) of the corpus that are in neither split
(text: from movies / speakers not in the test split; vision: images after the test split, exact duplicates
removed), labels dropped; the same pool at every size. Results append to bench/results/semi.jsonl (reruns skip
finished runs); the tables are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import beta_auto  # noqa: E402
import quality  # noqa: E402
import vision_quality  # noqa: E402

from hf_aft.commands.train import train  # noqa: E402

RESULTS = Path("bench/results/semi.jsonl")
WORK = Path("runs/semi")
SEEDS = (0, 1, 2)
SIZES = (100, 300, 1000, None)
METHODS = "stl,probe,distill,aft0.1+distill,distill+u+ep,aft0.1+distill+u+ep"
STEPS = {"text": 188, "vision": 256}
# suites that share another's data and pool
DATA = {"rt-minilm": "rt", "rt6": "rt", "rt-mpnet3": "rt", "vision-cnn": "vision"}
LABELLED = {"rt": quality.WORK / "data", "party": beta_auto.PARTY, "bbc": beta_auto.BBC,
            "vision": vision_quality.WORK / "data"}
SUITE_ARGS = {"rt": "mpnet", "rt-minilm": "minilm", "rt6": "mpnet6", "rt-mpnet3": "mpnet-student3"}  # beta_auto.TEXT
TEACHER = {"rt-minilm": "minilm"}  # a weak teacher: its probe is below the fine-tuned student at 2,000 labels


def is_image(suite: str) -> bool:
    return DATA.get(suite, suite) == "vision"


def suite_data(suite: str, pool: int) -> tuple[Path, Path]:
    """(labelled DatasetDict folder, unlabelled pool folder) of a suite, made once."""
    labelled = LABELLED[DATA.get(suite, suite)]
    folder = WORK / f"pool-{DATA.get(suite, suite)}-{pool}"
    if not (folder / "dataset_dict.json").exists():
        make_pool(DATA.get(suite, suite), pool).save_to_disk(str(folder))
    return labelled, folder


def make_pool(suite: str, size: int) -> datasets.DatasetDict:
    """`size` rows of the corpus in neither the train nor the test split, without labels, as a `train` split."""
    if suite == "vision":
        data = vision_quality.animal_mnist(n_train=2000, n_test=1000 + size)
        rest = data["test"].select(range(1000, len(data["test"])))  # after the test rows of the same permutation
        return datasets.DatasetDict({"train": rest.remove_columns("label")})
    from hf_aft.demo import rotten_tomatoes

    data = {"rt": rotten_tomatoes, "party": beta_auto.party, "bbc": beta_auto.bbc}[suite](n_unlabeled=size)
    saved = datasets.load_from_disk(str(LABELLED[suite]))
    assert data["train"]["text"] == saved["train"]["text"], "the labelled split differs from the saved one"
    return datasets.DatasetDict({"train": data["unlabeled"]})


def augmented_pool(pool: Path, copies: int) -> Path:
    """The pool and `copies` perturbed copies of each of its texts (hf_aft.augmentation.augment_texts, none equal to
    a test text), saved once beside it: more distinct inputs for the probe's targets than repeating the pool."""
    from hf_aft.augmentation import augment_texts

    folder = pool.with_name(f"{pool.name}-aug{copies}")
    if not (folder / "dataset_dict.json").exists():
        texts = list(datasets.load_from_disk(str(pool))["train"]["text"])
        suite = next(s for s in LABELLED if pool.name.startswith(f"pool-{s}-"))
        test = list(datasets.load_from_disk(str(LABELLED[suite]))["test"]["text"])
        rows = texts + augment_texts(texts, copies, seed=0, held_out=test)
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": rows})}).save_to_disk(str(folder))
    return folder


def method_args(method: str, pool: Path, own_share: float = 0.5) -> list[str]:
    """'aft0.1+distill+u+lf0.5' -> hf-aft train flags. No `distill` token: --distill none (the default, auto, would
    turn the probe on with unlabelled data)."""
    args, distill = [], "none"
    for token in method.split("+"):
        if token == "stl":
            args += ["--transfer", "none"]
        elif token == "auto":
            args += ["--transfer", "aft", "--beta", "auto"]
        elif token.startswith(("aft", "kd")):
            transfer = "aft" if token.startswith("aft") else "kd"
            args += ["--transfer", transfer, "--beta", token[len(transfer):]]
        elif token == "distill":
            distill = "probe"
        elif token.startswith("aug"):  # aug8: --augment_copies 8 (copies of the labelled texts as unlabelled rows)
            args += ["--augment_copies", token[3:]]
        elif token.startswith("gen"):  # gen800: --generate_texts 800 written by SmolLM2-135M-Instruct
            args += ["--generate_texts", token[3:], "--generator", str(quality.smollm_path())]
        elif token in ("tuned", "cvt", "c1"):  # not flags: run() swaps in the tuned teacher / the targets' C
            continue
        elif token == "u":
            args += ["--unlabeled_dataset", str(pool)]
        elif token.startswith("uaug"):  # uaug2: the pool plus 2 augmented copies of each pool text
            args += ["--unlabeled_dataset", str(augmented_pool(pool, int(token[4:])))]
        elif token == "lfown":  # the two sets' own share (the default before labeled_fraction 0.5 was measured)
            args += ["--labeled_fraction", f"{own_share:.6f}"]
        elif token.startswith("lf"):
            args += ["--labeled_fraction", token[2:]]
        elif token.startswith("lr"):  # lr1e-4: another learning rate than the suite's (the last flag given wins)
            args += ["--learning_rate", token[2:]]
        elif token.startswith("x"):  # x2: twice the full run's optimizer steps (a longer schedule, not equal compute)
            args += ["--steps_factor", token[1:]]
        elif token.startswith("t") and token[1:].replace(".", "").isdigit():  # t2: --distill_temperature 2
            args += ["--distill_temperature", token[1:]]
        elif token.startswith("w") and token[1:].replace(".", "").isdigit():  # w2: --distill_weight 2
            args += ["--distill_weight", token[1:]]
        elif token == "ep":  # the schedule hf-aft gives with unlabelled rows: the suite's epochs over the mixed epoch
            args += ["--steps_factor", "epochs"]
        elif token.startswith("ep") and token[2:].isdigit():  # ep2: twice that schedule (a patient distillation)
            args += ["--steps_factor", f"epochs{token[2:]}"]
        else:
            raise SystemExit(f"unknown method token {token!r} in {method!r}")
    if "--transfer" not in args:
        args += ["--transfer", "none"]
    return [*args, "--distill", distill]


def epoch_steps(kind: str, n: int, pool_size: int, labeled_fraction: float = 0.5) -> int:
    """Optimizer steps of the suite's epochs (text 3, vision 8) over labelled + unlabelled rows mixed at
    `labeled_fraction` (hf_aft.unlabeled.epoch_length), as `hf-aft train --unlabeled_dataset` runs by default."""
    import math

    from hf_aft.unlabeled import epoch_length

    epochs, batch = (3, 32) if kind == "text" else (8, 64)
    return epochs * math.ceil(epoch_length(n, pool_size, labeled_fraction) / batch)


def probe_accuracy(suite: str, labelled: Path, n: int | None, seed: int, tuned: bool = False) -> float:
    """The teacher's probe (the one `--distill probe` fits: hf_aft.distillation.linear_probe, its C chosen by
    cross-validated log-loss), fitted on the labelled rows' features, scored on the test split; `tuned`: the
    features of the teacher tuned on those rows (tuned_teacher)."""
    from hf_aft import extract_teacher_features
    from hf_aft.distillation import linear_probe

    data = datasets.load_from_disk(str(beta_auto.subset(labelled, n)))
    kind = {"image_column": "image"} if is_image(suite) else {"max_length": 64}
    teachers = ([str(vision_quality.TEACHER)] if is_image(suite)
                else [str(p) for p in quality.teacher_paths(TEACHER.get(suite, "mpnet"))])
    if tuned:
        teachers = [str(tuned_teacher(suite, labelled, n, seed))]
    x = {k: np.asarray(extract_teacher_features(data[k], teachers, **kind)["teacher_features"]) for k in data}
    probe = linear_probe(x["train"], np.asarray(data["train"]["label"]), seed)
    return float(probe.score(x["test"], data["test"]["label"]))


def setfit_accuracy(suite: str, labelled: Path, pool: Path, n: int | None, seed: int) -> dict:
    """SetFit's own recipe, the peer (pip `setfit`, its DistillationTrainer): the teacher (the suite's sentence
    transformer) fine-tuned SetFit-style on the labelled rows (contrastive pairs, then a logistic-regression head),
    then distilled into the student's body on the unlabelled pool (pairs whose target is the teacher's cosine
    similarity) and the student's head fitted on the teacher's predicted labels of the pool. Test accuracy of the
    student and of the fine-tuned teacher."""
    from setfit import DistillationTrainer, SetFitModel, TrainingArguments

    data = datasets.load_from_disk(str(beta_auto.subset(labelled, n)))
    unlabeled = datasets.load_from_disk(str(pool))["train"]
    out = WORK / "runs" / f"{suite}-setfit-{seed}-{n or 'all'}"  # SetFit's checkpoints (its default: ./checkpoints)
    teacher = setfit_teacher(suite, data["train"], seed, out / "teacher")
    student_init = quality.truncated_student(quality.minilm_path(), quality.WORK / "student-init-3l", layers=3)
    student = SetFitModel.from_pretrained(str(student_init))
    student_args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=5, max_length=64, seed=seed,
                                     output_dir=str(out / "student"))
    DistillationTrainer(teacher_model=teacher, student_model=student, args=student_args,
                        train_dataset=unlabeled).train()
    test = data["test"]
    score = {name: float(np.mean(np.asarray(model.predict(test["text"])) == np.asarray(test["label"])))
             for name, model in (("student", student), ("teacher", teacher))}
    return {"accuracy": score["student"], "setfit_teacher_accuracy": score["teacher"]}


def setfit_teacher(suite: str, train: datasets.Dataset, seed: int, out: Path):
    """The suite's sentence-transformer teacher fine-tuned SetFit-style on `train` (contrastive pairs, then a
    logistic-regression head): SetFit's own first step. num_iterations 5 (SetFit's default of 20 pairs per row and
    side is 4x the CPU time)."""
    from setfit import SetFitModel, Trainer, TrainingArguments

    torch.manual_seed(seed)
    teacher = SetFitModel.from_pretrained(str(quality.teacher_paths(TEACHER.get(suite, "mpnet"))[0]))
    args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=5, max_length=64, seed=seed,
                             output_dir=str(out))
    Trainer(model=teacher, args=args, train_dataset=train).train()
    return teacher


def tuned_teacher(suite: str, labelled: Path, n: int | None, seed: int) -> Path:
    """setfit_teacher's body saved once as a transformers folder (sentence-transformers writes the transformer at the
    folder's top), for hf-aft's --teachers: what a user with a task-tuned teacher of the same labels has."""
    folder = WORK / "teachers" / f"{suite}-tuned-{seed}-{n or 'all'}"
    if not (folder / "config.json").exists():
        train = datasets.load_from_disk(str(beta_auto.subset(labelled, n)))["train"]
        setfit_teacher(suite, train, seed, folder.with_name(folder.name + "-checkpoints")).model_body.save(str(folder))
    return folder


def run(suite: str, method: str, seed: int, n: int | None, pool_size: int) -> dict:
    labelled, pool = suite_data(suite, pool_size)
    pool_rows = datasets.load_from_disk(str(pool))["train"].num_rows  # bbc's corpus has fewer than --pool
    start = time.perf_counter()
    if method in ("probe", "probe+tuned"):
        row = {"accuracy": probe_accuracy(suite, labelled, n, seed, tuned=method == "probe+tuned")}
    elif method == "setfit":
        row = setfit_accuracy(suite, labelled, pool, n, seed)
    else:
        kind = "vision" if is_image(suite) else "text"
        base = beta_auto.suite_args(SUITE_ARGS.get(suite, suite), seed, n)
        if "tuned" in method.split("+"):  # one text teacher: the tuned one in its place
            base[base.index("--teachers") + 1] = str(tuned_teacher(suite, labelled, n, seed))
        out = WORK / "runs" / f"{suite}-{method}-{seed}-{n or 'all'}"
        rows = n or datasets.load_from_disk(str(labelled))["train"].num_rows
        pool_rows = unlabelled_rows(method, labelled, n, seed, pool, pool_rows)
        own_share = rows / (rows + pool_rows)
        args = [*base, *method_args(method, pool, own_share), "--seed", str(seed), "--save_strategy", "no",
                "--report_to", "none", "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir",
                "--output_dir", str(out), "--max_steps", str(STEPS[kind]), "--skip_cost_report", "true"]
        given = {flag: args[args.index(flag) + 1] for flag in ("--transfer", "--distill") if flag in args}
        if given.get("--transfer") == "none" and given.get("--distill") == "none":
            args = beta_auto.without_teachers(args)  # no term reads them: hf-aft train refuses them
        factor = args.pop(args.index("--steps_factor") + 1) if "--steps_factor" in args else "1"
        if factor != "1":
            args.remove("--steps_factor")
            steps = (epoch_steps(kind, rows, pool_rows) * int(factor[6:] or 1) if factor.startswith("epochs")
                     else round(float(factor) * STEPS[kind]))
            args[args.index("--max_steps") + 1] = str(max(steps, STEPS[kind]))
        if n is not None and n < 150 and "--beta" in args and args[args.index("--beta") + 1] == "auto":
            args += ["--beta_validation_fraction", "0.2"]  # at least 20 held-out examples (as bench/beta_auto.py)
        summary = train_with_targets_c(args, method)
        row = {"accuracy": summary["eval"]["eval_accuracy"], "beta": summary["beta"],
               "terms": summary.get("terms"), "train_s": summary["train"]["train_runtime"]}
    return {"suite": suite, "method": method, "seed": seed, "n": n, "pool": pool_size, "pool_rows": pool_rows,
            "wall_s": time.perf_counter() - start, **row}


def train_with_targets_c(args: list[str], method: str) -> dict:
    """`hf-aft train args`, the distillation targets' probe at C = 1 (`+c1`: hf-aft's targets before 2026-12-06) or
    with C chosen by cross-validated log-loss (`+cvt`: hf-aft's default since)."""
    from hf_aft import distillation

    default, tokens = distillation.TARGET_CS, method.split("+")
    distillation.TARGET_CS = (1.0,) if "c1" in tokens else distillation.PROBE_CS if "cvt" in tokens else default
    try:
        return train(args)
    finally:
        distillation.TARGET_CS = default


def unlabelled_rows(method: str, labelled: Path, n: int | None, seed: int, pool: Path, pool_rows: int) -> int:
    """The unlabelled rows a run mixes in: the pool's (`+u`), the augmented copies' (`+augK`), or both."""
    from hf_aft.augmentation import augment_texts

    tokens = method.split("+")
    copies = next((int(t[3:]) for t in tokens if t.startswith("aug")), 0)
    train = datasets.load_from_disk(str(beta_auto.subset(labelled, n)))["train"]
    made = (copies * len(train) if "image" in train.column_names  # every image copy is new
            else len(augment_texts(train["text"], copies, seed)))
    generated = next((int(t[3:]) for t in tokens if t.startswith("gen")), 0)  # as asked: a few may be left out
    augmented = next((augmented_pool(pool, int(t[4:])) for t in tokens if t.startswith("uaug")), None)
    if augmented:  # the pool with its copies
        return made + generated + datasets.load_from_disk(str(augmented))["train"].num_rows
    return made + generated + (pool_rows if "u" in tokens else 0)


def table(rows: list[dict], methods: list[str]) -> str:
    """Mean test accuracy per suite and size; in brackets the gain over STL paired by seed; the share of the
    probe's gap, (student - STL) / (probe - STL); the wall time relative to STL."""
    head = ["suite", "labelled", *methods, "best share of the probe's gap", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suite in sorted({r["suite"] for r in rows}):
        for n in SIZES:
            group = [r for r in rows if r["suite"] == suite and r["n"] == n]
            stl = {r["seed"]: r for r in group if r["method"] == "stl"}
            if not stl:
                continue
            probe = statistics.mean(r["accuracy"] for r in group if r["method"] == "probe") if any(
                r["method"] == "probe" for r in group) else None
            cells, shares = [], {}
            for method in methods:
                runs = [r for r in group if r["method"] == method and r["seed"] in stl]
                if not runs:
                    cells.append("-")
                    continue
                acc = statistics.mean(r["accuracy"] for r in runs)
                gain = statistics.mean(r["accuracy"] - stl[r["seed"]]["accuracy"] for r in runs)
                wall = statistics.mean(r["wall_s"] / stl[r["seed"]]["wall_s"] for r in runs)
                cell = f"{acc:.3f}" if method == "stl" else f"{acc:.3f} ({gain:+.3f}; {wall:.1f}x)"
                cells.append(cell + ("" if len(runs) == len(stl) else f" [{len(runs)}]"))
                stl_mean = statistics.mean(stl[r["seed"]]["accuracy"] for r in runs)
                if probe is not None and method != "stl" and not method.startswith("probe") and probe > stl_mean:
                    shares[method] = gain / (probe - stl_mean)
            best = max(shares, key=shares.get) if shares else None
            share = f"{shares[best]:.0%} ({best})" if best else "-"
            lines.append("| " + " | ".join([suite, str(n or "all"), *cells, share, str(len(stl))]) + " |")
    return "\n".join(lines)


def uses_pool(method: str) -> bool:
    return any(t == "u" or t.startswith("uaug") for t in method.split("+")) or method == "setfit"


def same_run(row: dict, suite: str, method: str, seed: int, n: int | None, pool: int) -> bool:
    """A finished row for this run (rows without unlabelled data do not depend on the pool)."""
    return ((row["suite"], row["method"], row["seed"], row["n"]) == (suite, method, seed, n)
            and (row["pool"] == pool or not uses_pool(method)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="rt,vision", help="comma-separated among rt, party, vision")
    parser.add_argument("--methods", default=METHODS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--sizes", default="100,300,1000,all", help="labelled-set sizes, 'all' for 2,000")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--pool", type=int, default=2000, help="unlabelled rows (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the tables of the finished runs only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quality.prepare_workdir()
    made = ((vision_quality.WORK / "data", vision_quality.animal_mnist), (beta_auto.PARTY, beta_auto.party),
            (beta_auto.BBC, beta_auto.bbc))
    for folder, make in made:
        if not (folder / "dataset_dict.json").exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            make().save_to_disk(str(folder))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    methods = args.methods.split(",")
    sizes = [None if n == "all" else int(n) for n in args.sizes.split(",")]
    for seed in [] if args.table else args.seeds:  # seed-major: an interrupted run still has every method
        for suite in args.suite.split(","):
            for n in sizes:
                for method in methods:
                    if any(same_run(r, suite, method, seed, n, args.pool) for r in done):
                        continue
                    row = run(suite, method, seed, n, args.pool)
                    print(json.dumps(row), flush=True)
                    done.append(row)
                    with RESULTS.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    shown = [r for r in done if r["pool"] == args.pool or not uses_pool(r["method"])]
    shown = [r for r in shown if r["suite"] in args.suite.split(",") and r["n"] in sizes]
    print(table(shown, [m for m in methods if any(r["method"] == m for r in shown)]))


if __name__ == "__main__":
    main()
