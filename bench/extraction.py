"""Throughput of `extract_teacher_features` against a bare `torch.inference_mode()` forward loop, and its cache.

Reproduce (CPU, about 2-4 minutes):

    .venv/bin/python bench/extraction.py

Same ~2000 Rotten Tomatoes training texts, same teacher (all-MiniLM-L6-v2), mean pooling, batch 32, max_length
128. The bare loop is written the obvious way: the teacher loaded once, then each consecutive batch of 32 texts is
tokenized (padding=True, truncation), run forward and mean-pooled over the attention mask; its time excludes
loading the teacher. `extract_teacher_features` is timed whole (hashing and loading the teacher, Arrow writes) with
a fresh cache folder, so it really computes, with its length grouping and without (`group_by_length=False`). A
"length-sorted" bare loop (texts sorted by token count, then batched) is shown for context. Methods are interleaved
over `--repeats` rounds and the best time of each is reported, with the tokens each method runs through the teacher,
padding included (work that other jobs on the machine cannot skew). Then the same call is made again with the same
cache folder: its time, and the teacher forwards and loads counted during it (BertModel.forward and
AutoModel.from_pretrained are wrapped), which should both be 0.
Goal: extraction rows/s >= 0.95 x the bare loop's. JSON goes to bench/results/extraction.json.

On a 2-core machine shared with other jobs, `--threads 2` mostly measures OpenMP threads waiting for a CPU (every
intra-op parallel region waits for a scheduler time slice, so each forward pays a large fixed cost); `--threads 1`
then gives cleaner numbers, e.g. `.venv/bin/python bench/extraction.py --threads 1 --repeats 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer, BertModel

from hf_aft import extract_teacher_features
from hf_aft.demo import minilm_path, rotten_tomatoes

RESULTS = Path(__file__).parent / "results"
BATCH, MAX_LENGTH = 32, 128


@torch.inference_mode()
def bare_loop(texts: list[str], tokenizer, model, sort: bool = False) -> np.ndarray:
    order = np.arange(len(texts))
    if sort:
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), BATCH):
        chunk = order[start : start + BATCH]
        batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=MAX_LENGTH,
                          return_tensors="pt")
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        out[chunk] = ((states * mask).sum(1) / mask.sum(1).clamp_min(1)).numpy()
    return out


def padded_tokens(lengths: np.ndarray, sort: bool = False, block: int | None = None) -> int:
    """Tokens the teacher runs (padding included) batching rows in order, or sorted by length within each block."""
    block = block or len(lengths)
    total = 0
    for first in range(0, len(lengths), block):
        rows = np.arange(first, min(first + block, len(lengths)))
        if sort:
            rows = rows[np.argsort(lengths[rows], kind="stable")]
        total += sum(len(c) * int(lengths[c].max()) for c in np.array_split(rows, range(BATCH, len(rows), BATCH)))
    return total


class Counter:
    """Counts teacher forwards and teacher loads while active."""

    def __init__(self):
        self.forwards = self.loads = 0
        forward, load = BertModel.forward, AutoModel.from_pretrained

        def counted_forward(model, *args, **kwargs):
            self.forwards += 1
            return forward(model, *args, **kwargs)

        def counted_load(*args, **kwargs):
            self.loads += 1
            return load(*args, **kwargs)

        self._patches = [mock.patch.object(BertModel, "forward", counted_forward),
                         mock.patch.object(AutoModel, "from_pretrained", counted_load)]

    def __enter__(self):
        for p in self._patches:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self._patches:
            p.stop()


def timed(fn):
    with Counter() as counter:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, seconds, counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    teacher = str(minilm_path())
    data = rotten_tomatoes(args.rows, 100, seed=0)["train"]
    texts = list(data["text"])
    start = time.perf_counter()
    tokenizer, model = AutoTokenizer.from_pretrained(teacher), AutoModel.from_pretrained(teacher).eval()
    load_s = time.perf_counter() - start
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]])
    tokens = {"extract_teacher_features (cold cache)": padded_tokens(lengths, sort=True, block=1024),  # map_batch_size
              "extract_teacher_features, no length grouping": padded_tokens(lengths),
              "bare loop": padded_tokens(lengths), "bare loop, length-sorted": padded_tokens(lengths, sort=True)}

    times = {name: [] for name in tokens}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            cache = Path(tmp) / f"cache{rep}"
            extracted, seconds, cold = timed(lambda c=cache: extract_teacher_features(
                data, teacher, pooling="mean", batch_size=BATCH, max_length=MAX_LENGTH, cache_dir=c))
            times["extract_teacher_features (cold cache)"].append(seconds)
            ungrouped, seconds, _ = timed(lambda c=cache: extract_teacher_features(
                data, teacher, pooling="mean", batch_size=BATCH, max_length=MAX_LENGTH, cache_dir=c / "ungrouped",
                group_by_length=False))
            times["extract_teacher_features, no length grouping"].append(seconds)
            bare, seconds, _ = timed(lambda: bare_loop(texts, tokenizer, model))
            times["bare loop"].append(seconds)
            bare_sorted, seconds, _ = timed(lambda: bare_loop(texts, tokenizer, model, sort=True))
            times["bare loop, length-sorted"].append(seconds)
        cached, cached_s, warm = timed(lambda: extract_teacher_features(
            data, teacher, pooling="mean", batch_size=BATCH, max_length=MAX_LENGTH, cache_dir=cache))

    features = np.asarray(extracted["teacher_features"], dtype=np.float32)
    diff = float(np.abs(features - bare).max())
    diff_sorted = float(np.abs(features - bare_sorted).max())
    diff_ungrouped = float(np.abs(np.asarray(ungrouped["teacher_features"], dtype=np.float32) - features).max())
    diff_cached = float(np.abs(np.asarray(cached["teacher_features"], dtype=np.float32) - features).max())
    best = {name: min(values) for name, values in times.items()}
    ratio = best["bare loop"] / best["extract_teacher_features (cold cache)"]

    n = len(texts)
    print(f"\n### Teacher feature extraction: {n} Rotten Tomatoes texts, all-MiniLM-L6-v2, mean pooling, "
          f"batch {BATCH}, max_length {MAX_LENGTH}, {torch.get_num_threads()} CPU threads, best of {args.repeats}\n")
    print("| method | time (s) | rows/s | vs bare loop | tokens run (with padding) | max abs diff vs extract |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds in best.items():
        d = {"bare loop": f"{diff:.2e}", "bare loop, length-sorted": f"{diff_sorted:.2e}",
             "extract_teacher_features, no length grouping": f"{diff_ungrouped:.2e}"}.get(name, "-")
        print(f"| {name} | {seconds:.2f} | {n / seconds:.1f} | {best['bare loop'] / seconds:.3f}x | {tokens[name]} "
              f"| {d} |")
    print(f"| extract_teacher_features (cached re-run) | {cached_s:.2f} | {n / cached_s:.1f} "
          f"| {best['bare loop'] / cached_s:.1f}x | 0 | {diff_cached:.2e} |")
    print(f"\nReal (unpadded) tokens: {int(lengths.sum())}.")
    print(f"Bare loop times exclude loading the teacher ({load_s:.2f} s); "
          "extract_teacher_features times include it.")
    print(f"Teacher forwards / loads: cold extraction {cold.forwards} / {cold.loads}, "
          f"cached re-run {warm.forwards} / {warm.loads}.")
    verdict = "met" if ratio >= 0.95 else "NOT met"
    print(f"Goal extraction >= 0.95x bare loop: {verdict} ({ratio:.3f}x).")

    print(f"\nLoad average (1/5/15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs.")
    RESULTS.mkdir(exist_ok=True)
    out = {"args": vars(args), "rows": n, "times_s": times, "best_s": best, "teacher_load_s": load_s,
           "cached_rerun_s": cached_s, "ratio_extract_vs_bare": ratio, "tokens_with_padding": tokens,
           "real_tokens": int(lengths.sum()), "max_abs_diff_bare": diff, "max_abs_diff_bare_sorted": diff_sorted,
           "max_abs_diff_ungrouped": diff_ungrouped,
           "max_abs_diff_cached": diff_cached, "cold_forwards": cold.forwards, "cold_loads": cold.loads,
           "cached_forwards": warm.forwards, "cached_loads": warm.loads}
    (RESULTS / "extraction.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
