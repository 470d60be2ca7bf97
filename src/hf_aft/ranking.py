"""`hf-aft rank-teachers`: how much each candidate teacher knows about the task, before any student training.

Each teacher's features come from `extract_teacher_features` (the same cache as training: ranking and then training
runs each teacher once) and get two scores: the LogME evidence (You et al., ICML 2021: the marginal likelihood of
the labels under Bayesian linear regression on the features, maximised over its two precisions; higher is better)
and a cross-validated logistic-regression probe accuracy. The student's own initial features (its encoder,
mean-pooled, extracted like a teacher) get the same scores, so a teacher that scores below the student has little to
transfer.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from .errors import AFTError


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-5) -> float:
    """LogME evidence per example, averaged over the classes' one-vs-rest targets (higher: the features explain
    the labels better). One SVD of the features serves every class and every fixed-point iteration."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of F^T F; the other d - k are zero
    k = len(sigma)
    evidences = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(np.float64)
        x2 = (u.T @ y) ** 2  # y's energy along each singular direction
        outside = max(float(y @ y - x2.sum()), 0.0)  # energy no linear map of F can reach
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()  # effective number of parameters
            m2 = (sigma * x2 / (sigma + t) ** 2).sum()  # |m|^2 of the posterior mean
            res2 = (x2 * (t / (sigma + t)) ** 2).sum() + outside  # |y - F m|^2
            alpha, beta = gamma / (m2 + 1e-12), (n - gamma) / (res2 + 1e-12)
            if abs(alpha / beta - t) / t < tol:
                break
        log_det = np.log(alpha + beta * sigma).sum() + (d - k) * np.log(alpha)
        evidence = (d * np.log(alpha) + n * np.log(beta) - log_det - beta * res2 - alpha * m2
                    - n * np.log(2 * np.pi)) / 2
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def check_folds(labels, folds: int) -> None:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(values) < 2:
        raise AFTError("the probe needs at least 2 classes in the labels.")
    if counts.min() < folds:
        raise AFTError(f"class {values[counts.argmin()]!r} has {counts.min()} examples, fewer than the probe's "
                       f"{folds} folds: lower --folds or add examples.")


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean and sd of a standardised logistic-regression probe's accuracy over stratified folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    check_folds(labels, folds)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(probe, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(scores.mean()), float(scores.std())


def score_features(dataset, labels, candidates: list[tuple[str, str]], folds: int = 5, seed: int = 0,
                   **extract_kwargs) -> list[dict]:
    """One row per (role, model) candidate (role: "teacher" or "student"): width, LogME, probe accuracy,
    extraction seconds and whether the features came from the cache; sorted by LogME, best first. The dataset is
    passed to `extract_teacher_features` as is: give the one training will see, so that both share the cache."""
    from .features import FEATURES_COLUMN, default_cache_dir, extract_teacher_features

    labels = np.asarray(labels)
    cache = Path(extract_kwargs.get("cache_dir") or default_cache_dir())
    rows = []
    for role, spec in candidates:
        before = set(cache.glob("teacher-*.arrow"))
        start = time.perf_counter()
        with_features = extract_teacher_features(dataset, [spec], **extract_kwargs)
        seconds = time.perf_counter() - start
        features = np.asarray(with_features.with_format("numpy")[FEATURES_COLUMN], dtype=np.float32)
        mean, sd = probe_accuracy(features, labels, folds, seed)
        rows.append({"name": spec, "role": role, "width": int(features.shape[1]), "logme": logme(features, labels),
                     "probe_accuracy": mean, "probe_accuracy_sd": sd, "extraction_seconds": round(seconds, 2),
                     "cached": not (set(cache.glob("teacher-*.arrow")) - before)})
    return sorted(rows, key=lambda row: -row["logme"])


def short_name(spec: str) -> str:
    """A Hub id as is; a local folder by its last two path components (package folders are often just "model")."""
    if not os.path.isdir(spec):
        return spec
    return "/".join(Path(os.path.abspath(spec)).parts[-2:])


def format_table(rows: list[dict], folds: int) -> str:
    lines = [f"{'rank':<5}{'features':<48}{'width':>6}{'LogME':>9}{f'probe acc ({folds}-fold)':>22}"
             f"{'extraction s':>16}"]
    for i, row in enumerate(rows, 1):
        name = short_name(row["name"]) + (" (student)" if row["role"] == "student" else "")
        probe = f"{row['probe_accuracy']:.4f} ± {row['probe_accuracy_sd']:.4f}"
        seconds = f"{row['extraction_seconds']:.1f}" + (" (cache)" if row["cached"] else "")
        lines.append(f"{i:<5}{name[-47:]:<48}{row['width']:>6}{row['logme']:>9.4f}{probe:>22}{seconds:>16}")
    return "\n".join(lines)


def run_rank_teachers(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="hf-aft rank-teachers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", nargs="+", required=True, help="candidate teachers: Hub ids or local folders")
    parser.add_argument("--dataset_name", required=True, help="as for hf-aft train")
    parser.add_argument("--dataset_config")
    parser.add_argument("--train_split", default="train", help="the split that is scored (the one you train on)")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--model_name_or_path", help="the student: its initial features are scored too")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher_pooling", default="auto")
    parser.add_argument("--teacher_batch_size", type=int, default=32)
    parser.add_argument("--teacher_max_length", type=int, default=256,
                        help="keep it equal to training's to share the feature cache")
    parser.add_argument("--output_file", help="where the JSON goes (default: OUTPUT_DIR/teacher_ranking.json)")
    parser.add_argument("--output_dir", help="folder for teacher_ranking.json")
    args = parser.parse_args(argv)
    if args.folds < 2:
        raise AFTError(f"--folds must be >= 2 (got {args.folds}).")

    from .data import Labels, check_columns, load_dataset_dict, pick_splits

    data = load_dataset_dict(args.dataset_name, args.dataset_config)
    train_set, _ = pick_splits(data, args.train_split, None)
    check_columns(train_set, args.text_column, args.label_column)
    labels = Labels.from_dataset(train_set, args.label_column)
    labelled = labels.encode(train_set)  # class ids; features are extracted from train_set, as training does
    check_folds(labelled["labels"], args.folds)  # before any teacher runs
    candidates = [("teacher", t) for t in args.teachers]
    if args.model_name_or_path:
        candidates.append(("student", args.model_name_or_path))
    rows = score_features(train_set, labelled["labels"], candidates, args.folds, args.seed,
                          text_column=args.text_column, pooling=args.teacher_pooling,
                          batch_size=args.teacher_batch_size, max_length=args.teacher_max_length)
    result = {"dataset": args.dataset_name, "split": args.train_split, "examples": len(train_set),
              "folds": args.folds, "teacher_max_length": args.teacher_max_length, "rows": rows}
    print(format_table(rows, args.folds))
    output = args.output_file or os.path.join(args.output_dir or ".", "teacher_ranking.json")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"ranking written to {output}")
    return result
